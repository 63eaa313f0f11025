"""The learned video codec's speed at 448x256 on the CPU (and CUDA where present), against x264 all-intra.

Run by `make bench` (or alone: `.venv/bin/python benchmarks/bench_learned.py`). On BBB frames 0-31 at
448x256 (the learned codec's evaluation frames) with the shipped weights, every repetition runs the
learned codec twice, with its default intra period (32: an I-frame, then P-frames, whose encoder also
searches motion and synthesises each reconstruction) and all-intra (intra_period 1), each in a fresh
process, alternating which goes first; then x264 all-intra (`keyint: 1`) on the same frames. Each figure
is the median over repetitions; ratios are medians of per-repetition ratios. Model loading is timed apart
(setup_s). CUDA fps are measured only where torch sees a GPU. Writes benchmarks/results/bench_learned.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from bench_summary import RUN_ID_ENV, cpu_model, usable_cores, write_stamped
from rich.console import Console
from rich.table import Table

from codeclab.training.data import EVAL_SOURCES
from codeclab.worker.codecs import StreamHeader, make_codec
from codeclab.worker.codecs.learned.frame_coder import FrameCoder, SequenceDecoder, SequenceEncoder
from codeclab.worker.codecs.learned.weights import builtin_weights, load_model
from codeclab.worker.sources import load_reference
from codeclab.worker.video import Video, read_y4m

SOURCE = EVAL_SOURCES[0]  # BBB frames 0-31 at 448x256
X264 = {"keyint": 1, "crf": 28, "threads": 1}  # bench_worker's all-intra anchor
THREADS = 2  # the learned codec's default `threads`
SIDES = {"video": 32, "all-intra": 1}  # side -> intra period


def run_side(intra_period: int, quality: int, frames: int, workdir: Path, device: str = "cpu") -> dict[str, Any]:
    """One side's setup time and fps, in this process."""
    torch.set_num_threads(THREADS)
    video = read_y4m(workdir / "reference.y4m", count=frames)
    planes = [video.frame_planes(i) for i in range(video.frames)]
    setup_s, coder = timed(lambda: FrameCoder(load_model(builtin_weights()).net, torch.device(device)))
    encoder = SequenceEncoder(coder, quality, intra_period)
    encode_s, payloads = timed(lambda: [encoder.encode(p) for p in planes])
    decoder = SequenceDecoder(coder, quality, intra_period, video.width, video.height)
    decode_s, _ = timed(lambda: [decoder.decode(p) for p in payloads])
    return {
        "setup_s": setup_s,
        "encode_fps": video.frames / encode_s,
        "decode_fps": video.frames / decode_s,
        "bytes": sum(len(p) for p in payloads),
    }


def side_in_child(intra_period: int, quality: int, frames: int, workdir: Path) -> dict[str, Any]:
    command = [sys.executable, __file__, "--intra-period", str(intra_period), "--quality", str(quality),
               "--frames", str(frames), "--workdir", str(workdir)]  # fmt: skip
    proc = subprocess.run(command, capture_output=True, text=True, check=True)
    return dict(json.loads(proc.stdout.splitlines()[-1]))


def timed(function: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = function()
    return time.perf_counter() - start, value


def x264_fps(video: Video, y4m: Path, workdir: Path) -> tuple[float, float]:
    codec = make_codec("x264", X264)
    bitstream = workdir / f"x264{codec.bitstream_suffix}"
    bitstream.unlink(missing_ok=True)
    encode_s, _ = timed(lambda: codec.encode(y4m, bitstream, lambda _n: None))
    decode_s, _ = timed(lambda: codec.decode(bitstream, StreamHeader.of(video), lambda _n: None))
    return video.frames / encode_s, video.frames / decode_s


def measure(quality: int, repetitions: int, frames: int, workdir: Path, console: Console) -> dict[str, Any]:
    reference = load_reference({**SOURCE, "frames": frames}, workdir, workdir / "reference.y4m")
    video, y4m = reference.video, reference.video.path
    rows: list[dict[str, float]] = []
    names = list(SIDES)
    for rep in range(repetitions):
        row: dict[str, float] = {}
        for side in names if rep % 2 == 0 else names[::-1]:  # alternate which runs first
            result = side_in_child(SIDES[side], quality, frames, workdir)
            for key in ("encode_fps", "decode_fps", "setup_s", "bytes"):
                row[f"{side}_{key}"] = result[key]
        row["x264_encode_fps"], row["x264_decode_fps"] = x264_fps(video, y4m, workdir)
        rows.append(row)
        console.print(f"repetition {rep + 1}/{repetitions}: " + ", ".join(f"{k} {v:.1f}" for k, v in row.items()))
    return {
        "quality": quality,
        "frames": video.frames,
        "size": [video.width, video.height],
        "repetitions": rows,
        "median": {key: statistics.median(r[key] for r in rows) for key in rows[0]},
        "ratios": {
            f"{step}_x264_over_{side}": statistics.median(r[f"x264_{step}_fps"] / r[f"{side}_{step}_fps"] for r in rows)
            for step in ("encode", "decode")
            for side in SIDES
        },
    }


def cuda_fps(quality: int, frames: int, workdir: Path) -> dict[str, float] | None:
    """The codec on CUDA, default intra period; None without a GPU."""
    if not torch.cuda.is_available():
        return None
    run_side(SIDES["video"], quality, 2, workdir, "cuda")  # warm-up: CUDA context and kernels
    result = run_side(SIDES["video"], quality, frames, workdir, "cuda")
    return {"encode_fps": result["encode_fps"], "decode_fps": result["decode_fps"]}


def print_table(console: Console, result: dict[str, Any]) -> None:
    median, ratio = result["median"], result["ratios"]
    table = Table(title=f"learned q{result['quality']} at 448x256, {result['frames']} frames, CPU, {THREADS} threads")
    for name in ("", "encode fps", "decode fps", "x264 all-intra / it (enc, dec)", "setup s", "bytes"):
        table.add_column(name, justify="right")
    for side, period in SIDES.items():
        table.add_row(
            f"{side} (intra_period {period})",
            f"{median[f'{side}_encode_fps']:.1f}",
            f"{median[f'{side}_decode_fps']:.1f}",
            f"{ratio[f'encode_x264_over_{side}']:.1f}x, {ratio[f'decode_x264_over_{side}']:.1f}x",
            f"{median[f'{side}_setup_s']:.2f}",
            f"{median[f'{side}_bytes']:.0f}",
        )
    table.add_row("x264 all-intra", f"{median['x264_encode_fps']:.1f}", f"{median['x264_decode_fps']:.1f}", "", "", "")
    console.print(table)
    if result["cuda"]:
        console.print(f"CUDA: encode {result['cuda']['encode_fps']:.1f} fps, decode {result['cuda']['decode_fps']:.1f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=f"${RUN_ID_ENV} sets the run id in the JSON (make bench sets one for all benches).",
    )
    parser.add_argument("--quality", type=int, default=4, choices=range(1, 7), metavar="1-6")
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--frames", type=int, default=32, help="BBB frames from 0 (default 32)")
    parser.add_argument("--intra-period", type=int, help=argparse.SUPPRESS)  # a child of measure()
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.intra_period:
        print(json.dumps(run_side(args.intra_period, args.quality, args.frames, args.workdir)))
        return
    console = Console(width=max(120, Console().width))
    with tempfile.TemporaryDirectory(prefix="codeclab-bench-learned-") as tmp:
        result = measure(args.quality, args.repetitions, args.frames, Path(tmp), console)
        result["cuda"] = cuda_fps(args.quality, args.frames, Path(tmp))
    print_table(console, result)
    result["conditions"] = {
        "source": {**SOURCE, "frames": args.frames},
        "torch": torch.__version__,
        "threads": f"learned: torch threads {THREADS}; x264: {X264}",
        "cpu_model": cpu_model(),
        "cores": usable_cores(),
        "python": platform.python_version(),
        "how": "each repetition runs the two learned sides in fresh processes (alternating which first), then x264 "
        "on the same frames; fps from in-memory frames for learned, from the y4m file for x264 (ffmpeg process "
        "included); ratios are medians of per-repetition ratios",
    }
    console.print(f"wrote {write_stamped('bench_learned', result)}")


if __name__ == "__main__":
    main()
