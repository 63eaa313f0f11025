"""Worker benchmark: metric throughput against ffmpeg's filters, and anchor encode/decode fps.

Run by `make bench`. Everything is single-threaded on purpose: numpy/OpenCV pools are
pinned to one thread and every codec runs with threads=1, so figures compare code, not
core counts. Prints rich tables and writes the same figures to
benchmarks/results/bench_worker.json.
"""

from __future__ import annotations

# ruff: noqa: E402  (the thread pinning below must run before numpy and OpenCV load)
import os

# BLAS/OpenMP pools read these once, when numpy loads: set them before any import of it.
PINNED_ENV = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)
for _name in PINNED_ENV:
    os.environ[_name] = "1"

import argparse
import json
import math
import platform
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from bench_summary import RUN_ID_ENV, cpu_model, run_stamp, usable_cores
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from codeclab.worker.codecs import StreamHeader, make_codec
from codeclab.worker.ffmpeg import library_versions, run_ffmpeg
from codeclab.worker.metrics import measure_quality, plane_psnr, plane_ssim
from codeclab.worker.sources import load_reference
from codeclab.worker.video import Video, read_y4m

RESULTS_PATH = Path(__file__).resolve().parent / "results" / "bench_worker.json"
METRIC_SOURCE = {"clip": "builtin:bbb", "frames": 30}  # no size: 1280x720 as shipped
METRIC_DISTORTION = ("x264", {"crf": 35, "threads": 1})
# Both inputs split so psnr and ssim each see every frame of both files.
FFMPEG_METRIC_GRAPH = "[0:v]split[a][b];[1:v]split[c][d];[a][c]psnr;[b][d]ssim"
Tick = Callable[[], None]


@dataclass(frozen=True)
class Anchor:
    label: str
    codec: str
    params: dict[str, Any]


@dataclass(frozen=True)
class Clip:
    label: str
    source: dict[str, Any]


ANCHORS = (
    Anchor("x264", "x264", {"crf": 28}),
    Anchor("x264 all-intra", "x264", {"crf": 28, "keyint": 1}),
    Anchor("x265", "x265", {"crf": 28}),
    Anchor("svtav1", "svtav1", {"crf": 35, "preset": 8}),
    Anchor("vp9", "vp9", {"crf": 35, "cpu_used": 2}),
    Anchor("jpeg", "jpeg", {"quality": 75}),
    Anchor("webp", "webp", {"quality": 75}),
    Anchor("avif", "avif", {"quality": 60, "speed": 6}),
)
CLIPS = (
    Clip("carphone 176x144", {"clip": "builtin:carphone", "frames": 32}),
    Clip("bbb 448x256", {"clip": "builtin:bbb", "frames": 32, "size": [448, 256]}),
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(
            "Benchmark the worker: our PSNR/SSIM/MS-SSIM against ffmpeg's psnr+ssim filters "
            "at 720p, and encode/decode fps of every anchor codec, all single-threaded."
        ),
        epilog=f"${RUN_ID_ENV} sets the run id in the JSON (make bench sets one for all benches).",
    )
    parser.add_argument("--quick", action="store_true", help="one repetition per timing instead of --reps")
    parser.add_argument("--reps", type=int, default=3, help="repetitions per timing; the median is reported")
    parser.add_argument("--json", type=Path, default=RESULTS_PATH, help=f"where to write the figures ({RESULTS_PATH})")
    args = parser.parse_args(argv)
    if args.reps < 1:
        parser.error("--reps must be at least 1")
    if args.quick:
        args.reps = 1
    return args


# --- test conditions -------------------------------------------------------------------


def ffmpeg_start_seconds(reps: int) -> float:
    """Wall time of a trivial ffmpeg run: the fixed cost inside every ffmpeg figure below."""
    args = ["-v", "error", "-f", "lavfi", "-i", "color=s=16x16:d=0.04", "-f", "null", "-"]
    return median_seconds(lambda: run_ffmpeg(args), max(reps, 3), lambda: None)


def test_conditions(reps: int) -> dict[str, Any]:
    libs = library_versions()
    return {
        "machine": f"{cpu_model()}, {usable_cores()} cores usable ({os.cpu_count()} online)",
        "cpu_model": cpu_model(),
        "cores": usable_cores(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "ffmpeg": libs["ffmpeg"],
        "ffmpeg_libraries": {k: v for k, v in libs.items() if k != "ffmpeg"},
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "threads": (
            f"{', '.join(PINNED_ENV)}=1 set before numpy loads; cv2.setNumThreads(1) "
            f"(cv2.getNumThreads()={cv2.getNumThreads()}); ffmpeg -threads 1 -filter_threads 1 "
            "-filter_complex_threads 1; every codec threads=1"
        ),
        "repetitions": reps,
        "statistic": "median of the repetitions, wall clock (time.perf_counter)",
        "ffmpeg_start_ms": round(ffmpeg_start_seconds(reps) * 1000, 1),
    }


def print_conditions(console: Console, conditions: dict[str, Any]) -> None:
    table = Table(title="codeclab worker benchmark: test conditions", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    libs = conditions["ffmpeg_libraries"]
    rows = {
        "machine": conditions["machine"],
        "platform": conditions["platform"],
        "python": conditions["python"],
        "ffmpeg": f"{conditions['ffmpeg']} (libavcodec {libs.get('libavcodec', '?')}, "
        f"libavfilter {libs.get('libavfilter', '?')})",
        "numpy / opencv": f"{conditions['numpy']} / {conditions['opencv']}",
        "thread pinning": conditions["threads"],
        "timing": f"{conditions['statistic']}, {conditions['repetitions']} repetition(s)",
        "ffmpeg process start": f"{conditions['ffmpeg_start_ms']} ms (included in ffmpeg figures)",
    }
    for key, value in rows.items():
        table.add_row(key, value)
    console.print(table)


# --- timing helpers --------------------------------------------------------------------


def median_seconds(work: Callable[[], object], reps: int, tick: Tick) -> float:
    """Median wall time of `reps` runs of `work`; tick() runs outside the timed region."""
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
        tick()
    return statistics.median(times)


def ignore_frame(_count: int) -> None:
    """The codecs' on_frame callback; progress is shown per run, not per frame."""


# --- 1. metric throughput at 720p -------------------------------------------------------


@dataclass(frozen=True)
class MetricInputs:
    ref: Video
    dist: Video
    ref_y4m: Path
    dist_y4m: Path
    bitstream_bytes: int


def prepare_metric_inputs(workdir: Path) -> MetricInputs:
    """BBB 720p, distorted by a real x264 encode and decode, on disk as two y4m files."""
    ref_y4m, dist_y4m = workdir / "bbb720_ref.y4m", workdir / "bbb720_dist.y4m"
    ref = Video.of(load_reference(METRIC_SOURCE, workdir, ref_y4m).video)
    if (ref.width, ref.height) != (1280, 720):
        raise RuntimeError(f"expected BBB at 1280x720, got {ref.width}x{ref.height}")
    codec = make_codec(*METRIC_DISTORTION)
    bitstream = workdir / f"bbb720{codec.bitstream_suffix}"
    codec.encode(ref_y4m, bitstream, ignore_frame)
    codec.decode_to(bitstream, StreamHeader.of(ref), dist_y4m, ignore_frame)
    dist = read_y4m(dist_y4m)
    return MetricInputs(ref, dist, ref_y4m, dist_y4m, bitstream.stat().st_size)


def ours_psnr_ssim(ref: Video, dist: Video) -> list[tuple[float, float, float, float]]:
    """Per frame: PSNR of Y, U, V and SSIM of Y (no MS-SSIM), as ffmpeg's filters give."""
    out = []
    for index in range(ref.frames):
        planes = zip(ref.frame_planes(index), dist.frame_planes(index), strict=True)
        y, u, v = (plane_psnr(r, d) for r, d in planes)
        out.append((y, u, v, plane_ssim(ref.y[index], dist.y[index])))
    return out


def ffmpeg_metric_args(inputs: MetricInputs, graph: str | None) -> list[str]:
    one = ["-threads", "1"]
    args = ["-v", "info", *one, "-i", str(inputs.dist_y4m), *one, "-i", str(inputs.ref_y4m)]
    # No graph: just demux and decode both files, the input cost inside the metric run.
    args += ["-lavfi", graph] if graph else ["-map", "0:v", "-map", "1:v"]
    return [*args, "-filter_threads", "1", "-filter_complex_threads", "1", "-f", "null", "-"]


def run_ffmpeg_counted(args: list[str]) -> tuple[str, int]:
    """Run ffmpeg; return its stderr and the output frame count from its progress reports."""
    frames = [0]

    def seen(count: int) -> None:
        frames[0] = max(frames[0], count)

    stderr = run_ffmpeg(args, on_frame=seen)
    return stderr, frames[0]


def ffmpeg_summary(stderr: str) -> dict[str, float]:
    """The clip-level values ffmpeg's psnr and ssim filters log at the end."""
    psnr = re.search(r"PSNR y:(\S+) u:(\S+) v:(\S+)", stderr)
    ssim = re.search(r"SSIM Y:(\S+) .*?U:(\S+) .*?V:(\S+)", stderr)
    if not psnr or not ssim:
        raise RuntimeError(f"ffmpeg printed no psnr/ssim summary:\n{stderr[-2000:]}")
    return {
        "psnr_y": float(psnr.group(1)),
        "psnr_u": float(psnr.group(2)),
        "psnr_v": float(psnr.group(3)),
        "ssim_y": float(ssim.group(1)),
    }


def time_ffmpeg(inputs: MetricInputs, graph: str | None, reps: int, tick: Tick) -> tuple[float, str]:
    """Median seconds of the whole ffmpeg process, and the stderr of an untimed first run."""
    # The untimed run checks that ffmpeg really went through every frame of both files.
    stderr, frames = run_ffmpeg_counted(ffmpeg_metric_args(inputs, graph))
    if frames != inputs.ref.frames:
        raise RuntimeError(f"ffmpeg processed {frames} frames, expected {inputs.ref.frames}")
    seconds = median_seconds(lambda: run_ffmpeg(ffmpeg_metric_args(inputs, graph)), reps, tick)
    return seconds, stderr


def psnr_of_mean_mse(per_frame_psnr: list[float]) -> float:
    """Clip PSNR from the mean MSE, as ffmpeg's psnr filter reports it (not mean PSNR)."""
    mse = [255.0**2 / 10 ** (p / 10) for p in per_frame_psnr]
    return 10 * math.log10(255.0**2 / statistics.fmean(mse))


def bench_metrics(workdir: Path, reps: int, tick: Tick) -> dict[str, Any]:
    inputs = prepare_metric_inputs(workdir)
    tick()
    ref, dist, n = inputs.ref, inputs.dist, inputs.ref.frames
    ours = ours_psnr_ssim(ref, dist)  # untimed: the agreement check, and a warm-up
    ff_seconds, ff_stderr = time_ffmpeg(inputs, FFMPEG_METRIC_GRAPH, reps, tick)
    seconds = {
        "ours_psnr_ssim": median_seconds(lambda: ours_psnr_ssim(ref, dist), reps, tick),
        "ours_measure_quality": median_seconds(lambda: measure_quality(ref, dist, workers=1), reps, tick),
        "ours_read_y4m": median_seconds(lambda: (read_y4m(inputs.ref_y4m), read_y4m(inputs.dist_y4m)), reps, tick),
        "ffmpeg_psnr_ssim": ff_seconds,
        "ffmpeg_read_only": time_ffmpeg(inputs, None, reps, tick)[0],
    }
    return {
        "clip": f"{METRIC_SOURCE['clip']} {ref.width}x{ref.height}, {n} frames, no scaling",
        "distortion": f"{METRIC_DISTORTION[0]} {METRIC_DISTORTION[1]}, {inputs.bitstream_bytes} bytes, decoded",
        "frames": n,
        "ffmpeg_command": "ffmpeg " + " ".join(ffmpeg_metric_args(inputs, FFMPEG_METRIC_GRAPH)),
        "seconds": seconds,
        "fps": {k: n / s for k, s in seconds.items()},
        "agreement": {
            "ours_psnr_y_of_mean_mse": psnr_of_mean_mse([f[0] for f in ours]),
            "ours_ssim_y_mean": statistics.fmean(f[3] for f in ours),
            **{f"ffmpeg_{k}": v for k, v in ffmpeg_summary(ff_stderr).items()},
        },
    }


def print_metrics(console: Console, result: dict[str, Any]) -> None:
    fps, secs = result["fps"], result["seconds"]
    ours_read = result["frames"] / (secs["ours_psnr_ssim"] + secs["ours_read_y4m"])
    table = Table(title=f"Metric throughput at 720p: {result['clip']}", caption=result["distortion"])
    for name, justify in (("what", "left"), ("work", "left"), ("frames/s", "right")):
        table.add_column(name, justify=justify)
    table.add_column("ours / ffmpeg", justify="right")
    ff = fps["ffmpeg_psnr_ssim"]
    table.add_row(
        "ours", "PSNR Y,U,V + SSIM Y (in memory)", f"{fps['ours_psnr_ssim']:.1f}", f"{fps['ours_psnr_ssim'] / ff:.3f}"
    )
    table.add_row("ours", "+ read_y4m of both files", f"{ours_read:.1f}", f"{ours_read / ff:.3f}")
    table.add_row(
        "ours",
        "measure_quality: PSNR + SSIM + MS-SSIM",
        f"{fps['ours_measure_quality']:.1f}",
        f"{fps['ours_measure_quality'] / ff:.3f}",
    )
    table.add_row("ffmpeg", "psnr + ssim filters, whole process incl. y4m decode", f"{ff:.1f}", "1")
    table.add_row(
        "ffmpeg", "baseline: y4m decode only, no filter (whole process)", f"{fps['ffmpeg_read_only']:.1f}", ""
    )
    console.print(table)
    agree = result["agreement"]
    console.print(
        f"  PSNR-Y of the clip (10*log10 of mean MSE): ours {agree['ours_psnr_y_of_mean_mse']:.4f}"
        f" dB, ffmpeg {agree['ffmpeg_psnr_y']:.4f} dB (same frames, same figure expected)\n"
        f"  SSIM-Y mean: ours {agree['ours_ssim_y_mean']:.4f} (Gaussian 11x11, Y only), ffmpeg "
        f"{agree['ffmpeg_ssim_y']:.4f} (8x8 blocks on a 4-px grid; it also does U and V): "
        "different variants, not expected to match\n"
        f"  ffmpeg: {result['ffmpeg_command']}",
        markup=False,  # the filter graph's [a][b] labels are not rich markup
    )


# --- 2. encode and decode fps per anchor -----------------------------------------------


def bench_anchor(
    anchor: Anchor, clip: Clip, ref: Video, ref_y4m: Path, workdir: Path, reps: int, tick: Tick
) -> dict[str, Any]:
    codec = make_codec(anchor.codec, anchor.params)
    bitstream = workdir / f"{anchor.label.replace(' ', '_')}{codec.bitstream_suffix}"
    header = StreamHeader.of(ref)
    decoded_y4m = bitstream.with_suffix(".decoded.y4m")
    encode_s, decode_s, sizes = [], [], []
    decoded = ref
    for _ in range(reps):
        bitstream.unlink(missing_ok=True)  # a failed encode must not leave an old file behind
        start = time.perf_counter()
        codec.encode(ref_y4m, bitstream, ignore_frame)
        encode_s.append(time.perf_counter() - start)
        sizes.append(bitstream.stat().st_size)
        start = time.perf_counter()
        codec.decode_to(bitstream, header, decoded_y4m, ignore_frame)
        decode_s.append(time.perf_counter() - start)
        decoded = read_y4m(decoded_y4m)
        tick()
    if decoded.y.shape != ref.y.shape:
        raise RuntimeError(f"{anchor.label}: decoded {decoded.y.shape}, reference {ref.y.shape}")
    psnr_y = statistics.fmean(plane_psnr(r, d) for r, d in zip(ref.y, decoded.y, strict=True))
    return {
        "clip": clip.label,
        "frames": ref.frames,
        "codec": anchor.label,
        "asked_params": anchor.params,
        "params": codec.params,
        "bytes": sizes[-1],
        "bytes_per_run": sizes,
        "bpp": sizes[-1] * 8 / (ref.width * ref.height * ref.frames),
        "psnr_y": psnr_y,
        "encode_s": statistics.median(encode_s),
        "decode_s": statistics.median(decode_s),
        "encode_fps": ref.frames / statistics.median(encode_s),
        "decode_fps": ref.frames / statistics.median(decode_s),
        "conditions": codec.conditions(),
    }


def bench_clip(
    clip: Clip, workdir: Path, reps: int, tick: Tick, describe: Callable[[str], None]
) -> list[dict[str, Any]]:
    clip_dir = workdir / clip.label.split()[0]
    clip_dir.mkdir()
    ref_y4m = clip_dir / "reference.y4m"
    ref = Video.of(load_reference(clip.source, clip_dir, ref_y4m).video)
    tick()
    results = []
    for anchor in ANCHORS:
        describe(f"{clip.label}: {anchor.label}")
        results.append(bench_anchor(anchor, clip, ref, ref_y4m, clip_dir, reps, tick))
    return results


def format_params(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in params.items())


def print_anchors(console: Console, rows: list[dict[str, Any]], start_ms: float) -> None:
    table = Table(title="Encode and decode speed per anchor (threads=1)")
    table.add_column("clip")
    table.add_column("codec")
    table.add_column("params")
    for name in ("bytes", "bpp", "PSNR-Y dB", "encode fps", "decode fps"):
        table.add_column(name, justify="right")
    for row in rows:
        varied = "*" if len(set(row["bytes_per_run"])) > 1 else ""
        table.add_row(
            row["clip"],
            row["codec"],
            format_params(row["asked_params"]),
            f"{row['bytes']}{varied}",
            f"{row['bpp']:.3f}",
            f"{row['psnr_y']:.2f}",
            f"{row['encode_fps']:.1f}",
            f"{row['decode_fps']:.1f}",
        )
    console.print(table)
    console.print(
        "  fps = frames / wall time of codec.encode or codec.decode, median of the runs. "
        f"x264/x265/svtav1/vp9 run as ffmpeg processes (about {start_ms:.0f} ms start each, "
        "which dominates on short clips); jpeg/webp/avif run in-process through OpenCV and "
        "include the RGB<->yuv420p conversion and, for encode, reading the y4m. "
        "PSNR-Y is the mean of per-frame PSNR; * marks sizes that varied between runs."
    )


# --- main ------------------------------------------------------------------------------


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")


def total_steps(reps: int) -> int:
    metric_steps = 1 + 3 * reps + 2 * reps  # prepare, 3 of ours, 2 ffmpeg graphs
    return metric_steps + len(CLIPS) * (1 + len(ANCHORS) * reps)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cv2.setNumThreads(1)
    console = Console()
    if not console.is_terminal:
        console.width = max(console.width, 120)  # piped (make bench | tee): rich assumes 80
    began = time.perf_counter()
    conditions = test_conditions(args.reps)
    print_conditions(console, conditions)
    # No refresh thread: it would take the GIL inside timed regions; redraw between runs.
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with (
        tempfile.TemporaryDirectory(prefix="codeclab-bench-") as tmp,
        Progress(*columns, console=console, auto_refresh=False, transient=True) as progress,
    ):
        task = progress.add_task("720p metrics", total=total_steps(args.reps))

        def tick() -> None:
            progress.advance(task)
            progress.refresh()

        def describe(text: str) -> None:
            progress.update(task, description=text, refresh=True)

        progress.refresh()
        metrics = bench_metrics(Path(tmp), args.reps, tick)
        print_metrics(console, metrics)
        anchors = [row for clip in CLIPS for row in bench_clip(clip, Path(tmp), args.reps, tick, describe)]
    print_anchors(console, anchors, conditions["ffmpeg_start_ms"])
    wall = time.perf_counter() - began
    payload = {
        "run": run_stamp(),
        "conditions": conditions,
        "metric_throughput_720p": metrics,
        "anchors": anchors,
        "wall_s": wall,
        "argv": sys.argv[1:],
    }
    write_json(args.json, payload)
    console.print(f"wrote {args.json}; total wall time {wall:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
