"""Metrics benchmark: measure_quality (PSNR + SSIM + MS-SSIM) against ffmpeg's psnr and ssim filters at 720p.

Run by `make bench`. Both sides run as the worker would run them, with their default threading,
on the same two y4m files: ffmpeg as a whole process (its start and y4m decode included), ours
on the clips in memory, as the worker's `metrics_s` times it. The two sides alternate, and the
figure is the median of the per-pair ratios ffmpeg seconds / our seconds, so load from other
processes hits both sides alike. Page faults per frame come from getrusage around our side.
Writes benchmarks/results/bench_metrics.json.
"""

from __future__ import annotations

import argparse
import math
import platform
import re
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from bench_summary import RUN_ID_ENV, cpu_model, usable_cores, write_stamped
from rich.console import Console
from rich.table import Table

from codeclab.worker.codecs import StreamHeader, make_codec
from codeclab.worker.ffmpeg import library_versions, run_ffmpeg
from codeclab.worker.metrics import measure_quality, metric_conditions
from codeclab.worker.sources import load_reference
from codeclab.worker.video import Video, write_y4m

NAME = "bench_metrics"
CLIP, FRAMES = "builtin:bbb", 60  # no size: 1280x720 as shipped
DISTORTION = ("x264", {"crf": 35, "threads": 1})
# Each input split so that psnr and ssim each see every frame of both files.
FFMPEG_GRAPH = "[0:v]split[a][b];[1:v]split[c][d];[a][c]psnr;[b][d]ssim"


@dataclass(frozen=True)
class Inputs:
    ref: Video
    dist: Video
    ref_y4m: Path
    dist_y4m: Path


@dataclass(frozen=True)
class Pair:
    ffmpeg_s: float
    ours_s: float
    faults: int


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="measure_quality (PSNR + SSIM + MS-SSIM) against ffmpeg's psnr+ssim filters at 720p.",
        epilog=f"${RUN_ID_ENV} sets the run id in the JSON (make bench sets one for all benches).",
    )
    parser.add_argument("--reps", type=int, default=5, help="alternated pairs; the median ratio is reported")
    parser.add_argument("--frames", type=int, default=FRAMES, help="frames of the 720p clip")
    args = parser.parse_args(argv)
    if args.reps < 1 or args.frames < 1:
        parser.error("--reps and --frames must be at least 1")
    return args


def prepare(workdir: Path, frames: int) -> Inputs:
    """BBB 720p and its x264 crf 35 decode, in memory and as two y4m files."""
    ref = load_reference({"clip": CLIP, "start": 0, "frames": frames}, workdir).video
    if (ref.width, ref.height) != (1280, 720):
        raise RuntimeError(f"expected BBB at 1280x720, got {ref.width}x{ref.height}")
    ref_y4m, dist_y4m = workdir / "ref.y4m", workdir / "dist.y4m"
    write_y4m(ref, ref_y4m)
    codec = make_codec(*DISTORTION)
    bitstream = workdir / f"dist{codec.bitstream_suffix}"
    codec.encode(ref_y4m, bitstream, lambda _n: None)
    dist = codec.decode(bitstream, StreamHeader.of(ref), lambda _n: None)
    write_y4m(dist, dist_y4m)
    return Inputs(ref, dist, ref_y4m, dist_y4m)


def ffmpeg_args(inputs: Inputs) -> list[str]:
    return [
        "-v",
        "info",
        "-i",
        str(inputs.dist_y4m),
        "-i",
        str(inputs.ref_y4m),
        "-lavfi",
        FFMPEG_GRAPH,
        "-f",
        "null",
        "-",
    ]


def faults() -> int:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_minflt + usage.ru_majflt


def one_pair(inputs: Inputs) -> Pair:
    start = time.perf_counter()
    run_ffmpeg(ffmpeg_args(inputs))
    ffmpeg_s = time.perf_counter() - start
    before, start = faults(), time.perf_counter()
    measure_quality(inputs.ref, inputs.dist)
    ours_s = time.perf_counter() - start
    return Pair(ffmpeg_s, ours_s, faults() - before)


def agreement(inputs: Inputs) -> dict[str, float]:
    """Clip PSNR-Y both ways (10*log10 of the mean MSE, as ffmpeg prints it), and our clip means."""
    stderr = run_ffmpeg(ffmpeg_args(inputs))
    match = re.search(r"PSNR y:(\S+)", stderr)
    if not match:
        raise RuntimeError(f"ffmpeg printed no psnr summary:\n{stderr[-2000:]}")
    rows = measure_quality(inputs.ref, inputs.dist)
    mse = statistics.fmean(255.0**2 / 10 ** (row["psnr_y"] / 10) for row in rows)
    return {
        "ffmpeg_psnr_y_of_mean_mse": float(match.group(1)),
        "ours_psnr_y_of_mean_mse": 10 * math.log10(255.0**2 / mse),
        **{f"ours_{key}": statistics.fmean(row[key] for row in rows) for key in ("psnr_yuv", "ssim", "ms_ssim")},
    }


def measure(inputs: Inputs, reps: int) -> dict[str, Any]:
    measure_quality(inputs.ref, inputs.dist)  # warm-up: imports, first allocations
    pairs = [one_pair(inputs) for _ in range(reps)]
    ratios = [p.ffmpeg_s / p.ours_s for p in pairs]
    n = inputs.ref.frames
    return {
        "ratio_ffmpeg_over_ours": statistics.median(ratios),
        "ratios": ratios,
        "ffmpeg_fps": n / statistics.median(p.ffmpeg_s for p in pairs),
        "ours_fps": n / statistics.median(p.ours_s for p in pairs),
        "page_faults_per_frame": statistics.median(p.faults for p in pairs) / n,
    }


def conditions(inputs: Inputs, reps: int) -> dict[str, Any]:
    return {
        "clip": f"{CLIP} {inputs.ref.width}x{inputs.ref.height}, {inputs.ref.frames} frames",
        "distortion": f"{DISTORTION[0]} {DISTORTION[1]}, decoded",
        "machine": f"{cpu_model()}, {usable_cores()} cores usable",
        "python": platform.python_version(),
        "ffmpeg": library_versions()["ffmpeg"],
        "ffmpeg_command": "ffmpeg " + " ".join(ffmpeg_args(inputs)),
        "opencv": cv2.__version__,
        "numpy": np.__version__,
        "ours": "measure_quality(ref, dec) on the clips in memory, default threading",
        "ours_conditions": {key: metric_conditions(8)[key] for key in ("ssim", "ms_ssim")},
        "pairs": reps,
        "statistic": "median of per-pair ratios ffmpeg wall s / our wall s, the two sides alternated",
    }


def print_result(console: Console, result: dict[str, Any]) -> None:
    cond, figures = result["conditions"], result["figures"]
    table = Table(title=f"Metrics at 720p: {cond['clip']}, {cond['machine']}")
    for column in ("figure", "value"):
        table.add_column(column)
    spread = f"{min(figures['ratios']):.3f}-{max(figures['ratios']):.3f}"
    table.add_row("ffmpeg s / our metrics s", f"{figures['ratio_ffmpeg_over_ours']:.3f} (pairs {spread})")
    table.add_row("ours, frames/s", f"{figures['ours_fps']:.1f}")
    table.add_row("ffmpeg psnr+ssim, frames/s", f"{figures['ffmpeg_fps']:.1f}")
    table.add_row("our page faults per frame", f"{figures['page_faults_per_frame']:.0f}")
    agree = result["agreement"]
    table.add_row(
        "clip PSNR-Y (of mean MSE)",
        f"ours {agree['ours_psnr_y_of_mean_mse']:.4f} dB, ffmpeg {agree['ffmpeg_psnr_y_of_mean_mse']:.4f} dB",
    )
    table.add_row("clip SSIM / MS-SSIM (ours)", f"{agree['ours_ssim']:.6f} / {agree['ours_ms_ssim']:.6f}")
    console.print(table)
    console.print(f"  {cond['ffmpeg_command']}", markup=False)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console()
    with tempfile.TemporaryDirectory(prefix="codeclab-bench-metrics-") as tmp:
        inputs = prepare(Path(tmp), args.frames)
        result = {
            "conditions": conditions(inputs, args.reps),
            "figures": measure(inputs, args.reps),
            "agreement": agreement(inputs),
        }
    print_result(console, result)
    console.print(f"wrote {write_stamped(NAME, result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
