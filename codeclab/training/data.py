"""The training and evaluation data: fixed, documented, and disjoint.

I-frames train on bikes (all 250 frames) and Big Buck Bunny frames 32-131, each at its own
size and scaled down, so the model sees both native detail and the downscaled statistics of
the benchmark. P-frames train on consecutive pairs of the scaled-down ones. Evaluation uses
BBB frames 0-31 and carphone, which training never touches. BBB's training frames are later
shots of the same film, so the two sets share a style but no frame.

A P-frame's reference at coding time is a decoded frame, not an original. Training stands one
in with the previous frame coded by x264 all-intra at a QP matched to each quality level, and
predicts from it with the codec's own motion search and compensation.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import torch

from codeclab.experiments.schema import SourceSpec
from codeclab.worker.codecs.learned.model import pack_yuv420
from codeclab.worker.codecs.learned.motion import compensate, estimate
from codeclab.worker.ffmpeg import run_ffmpeg
from codeclab.worker.sources import load_reference
from codeclab.worker.video import FrameFile, Planes, Video, write_y4m

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
# x264 all-intra QP of the stand-in reference for each quality level, 1 (fewest bits) first
REFERENCE_QPS = (47, 44, 41, 38, 35, 32)


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
    """A clip's frames and, per quality level, each frame's prediction from its stand-in reference."""

    video: Video
    predictions: list[list[Planes]]  # [quality][frame - 1]


class PatchSampler:
    """Random 256x256 luma crops (with their chroma) and horizontal flips, from a seeded generator.

    I-frame batches are crops of one frame; P-frame batches are crops of a frame and of its prediction at the
    same place, at a quality drawn for each crop. The generator's state is part of a training checkpoint."""

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
            crops.append(self._crop(video.width, video.height, [video.frame_planes(frame)])[0])
        return _packed(crops)

    def inter_batch(self, qualities: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(frames, predictions) in packed layout, one pair per entry of `qualities` (0-based)."""
        currents, predictions = [], []
        for quality in qualities.tolist():
            clip_index, frame = self.pairs[self.rng.integers(len(self.pairs))]
            clip = self.inter[clip_index]
            current, predicted = self._crop(
                clip.video.width,
                clip.video.height,
                [clip.video.frame_planes(frame), clip.predictions[quality][frame - 1]],
            )
            currents.append(current)
            predictions.append(predicted)
        return _packed(currents), _packed(predictions)

    def _crop(self, width: int, height: int, frames: list[Planes]) -> list[Planes]:
        """The same crop (and flip) of each of `frames`."""
        top = 2 * self.rng.integers((height - PATCH) // 2 + 1)
        left = 2 * self.rng.integers((width - PATCH) // 2 + 1)
        flip = bool(self.rng.integers(2))
        out = []
        for y, u, v in frames:
            crops = (
                y[top : top + PATCH, left : left + PATCH],
                u[top // 2 : (top + PATCH) // 2, left // 2 : (left + PATCH) // 2],
                v[top // 2 : (top + PATCH) // 2, left // 2 : (left + PATCH) // 2],
            )
            if flip:
                crops = (crops[0][:, ::-1], crops[1][:, ::-1], crops[2][:, ::-1])
            out.append((np.ascontiguousarray(crops[0]), np.ascontiguousarray(crops[1]), np.ascontiguousarray(crops[2])))
        return out


def _packed(crops: list[Planes]) -> torch.Tensor:
    y, u, v = (torch.from_numpy(np.stack(p)).float().div_(255.0) for p in zip(*crops, strict=True))
    return pack_yuv420(y, u, v)


def limited(sources: tuple[SourceSpec, ...], max_frames: int | None) -> tuple[SourceSpec, ...]:
    """The sources cut to their first `max_frames` frames (None: whole)."""
    if max_frames is None:
        return sources
    return tuple({**s, "frames": min(s.get("frames", max_frames), max_frames)} for s in sources)


@cache  # read only: a process that trains twice (the tests) loads once
def load_training_data(max_frames: int | None = None) -> tuple[list[Video], list[InterClip]]:
    """Decode and scale the training sources, code the stand-in references and predict every P-frame
    (about two minutes on 2 cores: x264, and the motion search on each consecutive pair). `max_frames`
    keeps each source's first frames only, for a quick trial."""
    inter_sources = limited(INTER_SOURCES, max_frames)
    with tempfile.TemporaryDirectory(prefix="codeclab-train-") as tmp:
        workdir = Path(tmp)
        videos, inter = [], []
        for index, source in enumerate(limited(TRAIN_SOURCES, max_frames)):
            (workdir / str(index)).mkdir()
            reference = load_reference(source, workdir / str(index))
            videos.append(Video.of(reference.video))
            if source in inter_sources:
                inter.append(_inter_clip(videos[-1], workdir / f"{index}-refs"))
        return videos, inter


def _inter_clip(video: Video, workdir: Path) -> InterClip:
    workdir.mkdir()
    y4m = workdir / "source.y4m"
    write_y4m(video, y4m)
    pairs = range(1, video.frames)
    vectors = [estimate(video.frame_planes(f)[0], video.frame_planes(f - 1)[0]) for f in pairs]
    predictions = []
    for qp in REFERENCE_QPS:
        coded = _x264_intra_copy(y4m, qp, workdir)
        predictions.append([compensate(coded.frame_planes(f - 1), vectors[f - 1]) for f in pairs])
    return InterClip(video, predictions)


def _x264_intra_copy(y4m: Path, qp: int, workdir: Path) -> Video:
    """The clip coded by x264 all-intra at `qp` and decoded again (one thread: the same bytes every time)."""
    coded, decoded = workdir / f"qp{qp}.mkv", workdir / f"qp{qp}.y4m"
    run_ffmpeg(["-i", str(y4m), "-c:v", "libx264", "-qp", str(qp), "-g", "1", "-threads", "1", str(coded)])
    run_ffmpeg(["-threads", "1", "-i", str(coded), "-f", "yuv4mpegpipe", "-pix_fmt", "yuv420p", str(decoded)])
    return Video.of(FrameFile.y4m(decoded))
