"""The training and evaluation data: fixed, documented, and disjoint.

I-frames train on bikes (all 250 frames) and Big Buck Bunny frames 32-131, each at its own
size and scaled down, so the model sees both native detail and the downscaled statistics of
the benchmark. P-frames train on consecutive pairs of the scaled-down ones. Evaluation uses
BBB frames 0-31 and carphone, which training never touches. BBB's training frames are later
shots of the same film, so the two sets share a style but no frame.

A P-frame's reference at coding time is a decoded frame, not an original. Training codes the
previous frame (with a margin the vectors can reach into) through the I-network as it stands at
that step, at the crop's quality, and predicts from that reconstruction with the codec's own
compensation; the vectors are searched once, on the originals.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import torch

from codeclab.experiments.schema import SourceSpec
from codeclab.worker.codecs.learned.model import pack_yuv420, quantise_, unpack_yuv420
from codeclab.worker.codecs.learned.motion import BLOCK, compensate, estimate
from codeclab.worker.sources import load_reference
from codeclab.worker.video import Planes, Video

TRAIN_SOURCES: tuple[SourceSpec, ...] = (
    {"clip": "builtin:bikes", "start": 0},
    {"clip": "builtin:bikes", "start": 0, "size": [448, 256]},
    {"clip": "builtin:bbb", "start": 32, "frames": 100},
    {"clip": "builtin:bbb", "start": 32, "frames": 100, "size": [448, 256]},
    {"clip": "builtin:bbb", "start": 32, "frames": 100, "size": [768, 432]},
)
EVAL_SOURCES: tuple[SourceSpec, ...] = (
    {"clip": "builtin:bbb", "start": 0, "frames": 32, "size": [448, 256]},
    {"clip": "builtin:carphone", "start": 0},
)
INTER_SOURCES: tuple[SourceSpec, ...] = TRAIN_SOURCES[1:2] + TRAIN_SOURCES[3:5]
PATCH = 256  # luma samples per side of a training crop
# Luma samples of reference around a P-frame crop: a vector reaches 17 beyond its block. 32 keeps the
# reference crop (PATCH + 2 * MARGIN) a multiple of the networks' alignment, and of the 16-sample blocks.
MARGIN = 32


def frame_ranges(sources: tuple[SourceSpec, ...]) -> dict[str, set[int]]:
    """Which frames of each built-in clip a list of sources uses (None frames = to the end)."""
    totals = {"builtin:bikes": 250, "builtin:bbb": 132, "builtin:carphone": 120}
    used: dict[str, set[int]] = {}
    for source in sources:
        start = source.get("start", 0)
        end = start + source.get("frames", totals[source["clip"]] - start)
        used.setdefault(source["clip"], set()).update(range(start, end))
    return used


@dataclass(frozen=True)
class InterClip:
    """A clip's frames and, for each frame after the first, its vectors from the frame before (one per
    16x16 block, searched on the originals)."""

    video: Video
    vectors: list[np.ndarray]  # [frame - 1]: (rows, cols, 2)


@dataclass(frozen=True)
class InterBatch:
    """P-frame crops, the previous frame's crops with MARGIN around them, and each reference crop's vectors."""

    current: torch.Tensor  # packed, (B, 6, PATCH/2, PATCH/2)
    references: torch.Tensor  # packed, (B, 6, PATCH/2 + MARGIN, PATCH/2 + MARGIN)
    vectors: list[np.ndarray]  # per crop: ((PATCH + 2 * MARGIN) / 16, (PATCH + 2 * MARGIN) / 16, 2)


class PatchSampler:
    """Random 256x256 luma crops (with their chroma) from a seeded generator.

    I-frame batches are crops of one frame, flipped at random. P-frame batches are crops of a frame at block
    boundaries, with the previous frame around the same place (unflipped: a flip would turn the vectors).
    The generator's state is part of a training checkpoint."""

    def __init__(self, videos: list[Video], inter: list[InterClip], seed: int) -> None:
        self.videos = videos
        self.inter = inter
        self.rng = np.random.default_rng(seed)
        # every frame equally likely, whichever clip it comes from
        self.index = [(v, f) for v, video in enumerate(videos) for f in range(video.frames)]
        self.pairs = [(c, f) for c, clip in enumerate(inter) for f in range(1, clip.video.frames)]

    def qualities(self, size: int, levels: int) -> torch.Tensor:
        return torch.from_numpy(self.rng.integers(levels, size=size))

    def batch(self, size: int) -> torch.Tensor:
        crops = []
        for _ in range(size):
            video_index, frame = self.index[self.rng.integers(len(self.index))]
            video = self.videos[video_index]
            top = 2 * int(self.rng.integers((video.height - PATCH) // 2 + 1))
            left = 2 * int(self.rng.integers((video.width - PATCH) // 2 + 1))
            crop = _crop(video.frame_planes(frame), top, left, PATCH)
            if self.rng.integers(2):
                crop = (crop[0][:, ::-1], crop[1][:, ::-1], crop[2][:, ::-1])
            crops.append(crop)
        return _packed(crops)

    def inter_batch(self, size: int) -> InterBatch:
        currents, references, vectors = [], [], []
        for _ in range(size):
            clip_index, frame = self.pairs[self.rng.integers(len(self.pairs))]
            clip = self.inter[clip_index]
            top = BLOCK * int(self.rng.integers((clip.video.height - PATCH) // BLOCK + 1))
            left = BLOCK * int(self.rng.integers((clip.video.width - PATCH) // BLOCK + 1))
            currents.append(_crop(clip.video.frame_planes(frame), top, left, PATCH))
            previous = _edge_padded(clip.video.frame_planes(frame - 1), MARGIN)
            references.append(_crop(previous, top, left, PATCH + 2 * MARGIN))
            field = np.pad(clip.vectors[frame - 1], ((MARGIN // BLOCK,) * 2, (MARGIN // BLOCK,) * 2, (0, 0)))
            span = (PATCH + 2 * MARGIN) // BLOCK
            vectors.append(field[top // BLOCK : top // BLOCK + span, left // BLOCK : left // BLOCK + span])
        return InterBatch(_packed(currents), _packed(references), vectors)


def predictions(reconstructed: torch.Tensor, vectors: list[np.ndarray]) -> torch.Tensor:
    """Each P crop's prediction: its reference crop as reconstructed (packed floats, rounded to 8 bits as a
    decoder's are, in place: `reconstructed` is used up), compensated with its vectors, the margin cut away."""
    samples = quantise_(reconstructed.detach()).cpu()
    luma, u, v = unpack_yuv420(samples)
    out = []
    for index, field in enumerate(vectors):
        planes = (luma[index].numpy(), u[index].numpy(), v[index].numpy())
        predicted = compensate(planes, field)
        out.append(_crop(predicted, MARGIN, MARGIN, PATCH))
    return _packed(out).to(reconstructed.device)


def _crop(planes: Planes, top: int, left: int, size: int) -> Planes:
    y, u, v = planes
    return (
        np.ascontiguousarray(y[top : top + size, left : left + size]),
        np.ascontiguousarray(u[top // 2 : (top + size) // 2, left // 2 : (left + size) // 2]),
        np.ascontiguousarray(v[top // 2 : (top + size) // 2, left // 2 : (left + size) // 2]),
    )


def _edge_padded(planes: Planes, margin: int) -> Planes:
    return (
        np.pad(planes[0], margin, mode="edge"),
        np.pad(planes[1], margin // 2, mode="edge"),
        np.pad(planes[2], margin // 2, mode="edge"),
    )


def _packed(crops: list[Planes]) -> torch.Tensor:
    y, u, v = (
        torch.from_numpy(np.ascontiguousarray(np.stack(p))).float().div_(255.0) for p in zip(*crops, strict=True)
    )
    return pack_yuv420(y, u, v)


def limited(sources: tuple[SourceSpec, ...], max_frames: int | None) -> tuple[SourceSpec, ...]:
    """The sources cut to their first `max_frames` frames (None: whole)."""
    if max_frames is None:
        return sources
    return tuple({**s, "frames": min(s.get("frames", max_frames), max_frames)} for s in sources)


@cache  # read only: a process that trains twice (the tests) loads once
def load_training_data(max_frames: int | None = None) -> tuple[list[Video], list[InterClip]]:
    """Decode and scale the training sources, and search the vectors of every P-frame pair (under a minute on
    2 cores). `max_frames` keeps each source's first frames only, for a quick trial."""
    inter_sources = limited(INTER_SOURCES, max_frames)
    with tempfile.TemporaryDirectory(prefix="codeclab-train-") as tmp:
        workdir = Path(tmp)
        videos, inter = [], []
        for index, source in enumerate(limited(TRAIN_SOURCES, max_frames)):
            (workdir / str(index)).mkdir()
            videos.append(Video.of(load_reference(source, workdir / str(index)).video))
            if source in inter_sources:
                video = videos[-1]
                pairs = range(1, video.frames)
                vectors = [estimate(video.frame_planes(f)[0], video.frame_planes(f - 1)[0]) for f in pairs]
                inter.append(InterClip(video, vectors))
        return videos, inter
