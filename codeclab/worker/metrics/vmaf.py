"""VMAF through ffmpeg's libvmaf filter, read back from its JSON log."""

from __future__ import annotations

import json
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

from codeclab.worker.ffmpeg import FFmpegFailed, run_ffmpeg
from codeclab.worker.video import FrameCallback

# libvmaf's default model, named explicitly so the recorded name is the one used.
VMAF_MODEL = "vmaf_v0.6.1"

# Characters each level of filtergraph parsing treats as syntax (option value, then graph).
_OPTION_SPECIALS = "\\':"
_GRAPH_SPECIALS = "\\'[],;"

# A tiny synthetic pair, enough for libvmaf to write a log that names its version.
_PROBE_INPUT = ["-f", "lavfi", "-i", "color=c=gray:s=64x64:d=0.04,format=yuv420p"]


def vmaf_per_frame(
    reference_y4m: Path,
    distorted_y4m: Path,
    threads: int = 2,
    on_frame: FrameCallback | None = None,
) -> list[float]:
    """Per-frame VMAF of `distorted_y4m` against `reference_y4m` (same size and length)."""
    # libvmaf takes the distorted clip as its first ("main") input.
    inputs = ["-i", str(distorted_y4m), "-i", str(reference_y4m)]
    what = f"VMAF of {distorted_y4m} against {reference_y4m}"
    log = _run_libvmaf(inputs, threads, on_frame, what)
    return [float(frame["metrics"]["vmaf"]) for frame in log["frames"]]


@cache
def vmaf_version() -> str:
    """libvmaf's build and the model, e.g. 'libvmaf 86da14d, model vmaf_v0.6.1'."""
    log = _run_libvmaf(_PROBE_INPUT * 2, 1, None, "libvmaf version probe")
    return f"libvmaf {log['version']}, model {VMAF_MODEL}"


def _run_libvmaf(inputs: list[str], threads: int, on_frame: FrameCallback | None, what: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="codeclab-vmaf-") as tmp:
        log_path = Path(tmp) / "vmaf.json"
        graph = _filter_graph(log_path, threads)
        try:
            run_ffmpeg([*inputs, "-lavfi", graph, "-f", "null", "-"], on_frame=on_frame)
        except FFmpegFailed as exc:
            raise RuntimeError(f"{what} failed: {exc}") from exc
        log: dict[str, Any] = json.loads(log_path.read_text())
    if not log.get("frames"):
        raise RuntimeError(f"{what} failed: libvmaf logged no frames")
    return log


def _filter_graph(log_path: Path, threads: int) -> str:
    options = {
        "model": f"version={VMAF_MODEL}",
        "log_fmt": "json",
        "log_path": str(log_path),
        "n_threads": str(threads),
    }
    args = ":".join(f"{key}={_escape(value, _OPTION_SPECIALS)}" for key, value in options.items())
    return _escape(f"libvmaf={args}", _GRAPH_SPECIALS)


def _escape(text: str, specials: str) -> str:
    """Backslash-escape one level of ffmpeg filtergraph syntax (a path may hold ':' or ',')."""
    return "".join(f"\\{char}" if char in specials else char for char in text)
