"""The training and evaluation data: fixed, documented, and disjoint.

Training uses bikes (all 250 frames) and Big Buck Bunny frames 32-131, each at its own size
and scaled down, so the model sees both native detail and the downscaled statistics of the
benchmark. Evaluation uses BBB frames 0-31 and carphone, which training never touches.
BBB's training frames are later shots of the same film, so the two sets share a style but
no frame.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from codeclab.experiments.schema import SourceSpec
from codeclab.worker.codecs.learned.model import pack_yuv420
from codeclab.worker.sources import load_reference
from codeclab.worker.video import Video

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
PATCH = 256  # luma samples per side of a training crop


def frame_ranges(sources: tuple[SourceSpec, ...]) -> dict[str, set[int]]:
    """Which frames of each built-in clip a list of sources uses (None frames = to the end)."""
    totals = {"builtin:bikes": 250, "builtin:bbb": 132, "builtin:carphone": 120}
    used: dict[str, set[int]] = {}
    for source in sources:
        start = source.get("start", 0)
        end = start + source.get("frames", totals[source["clip"]] - start)
        used.setdefault(source["clip"], set()).update(range(start, end))
    return used


class PatchSampler:
    """Random 256x256 luma crops (with their chroma) and horizontal flips, from a seeded generator."""

    def __init__(self, videos: list[Video], seed: int) -> None:
        self.videos = videos
        self.rng = np.random.default_rng(seed)
        # every frame equally likely, whichever clip it comes from
        self.index = [(v, f) for v, video in enumerate(videos) for f in range(video.frames)]

    def batch(self, size: int) -> torch.Tensor:
        planes = [self._patch() for _ in range(size)]
        y, u, v = (torch.from_numpy(np.stack(p)).float().div_(255.0) for p in zip(*planes, strict=True))
        return pack_yuv420(y, u, v)

    def _patch(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        video_index, frame = self.index[self.rng.integers(len(self.index))]
        video = self.videos[video_index]
        top = 2 * self.rng.integers((video.height - PATCH) // 2 + 1)
        left = 2 * self.rng.integers((video.width - PATCH) // 2 + 1)
        y, u, v = video.frame_planes(frame)
        crops = (
            y[top : top + PATCH, left : left + PATCH],
            u[top // 2 : (top + PATCH) // 2, left // 2 : (left + PATCH) // 2],
            v[top // 2 : (top + PATCH) // 2, left // 2 : (left + PATCH) // 2],
        )
        if self.rng.integers(2):
            crops = (crops[0][:, ::-1], crops[1][:, ::-1], crops[2][:, ::-1])
        return np.ascontiguousarray(crops[0]), np.ascontiguousarray(crops[1]), np.ascontiguousarray(crops[2])


def load_training_videos() -> list[Video]:
    """Decode and scale the training sources (a few seconds, with ffmpeg)."""
    with tempfile.TemporaryDirectory(prefix="codeclab-train-") as tmp:
        return [Video.of(load_reference(source, Path(tmp)).video) for source in TRAIN_SOURCES]
