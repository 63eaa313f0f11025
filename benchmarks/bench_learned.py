"""The learned codec's CPU speed at 448x256, before and after issue 18's speed work, against x264 all-intra.

Run by `make bench` (or alone: `.venv/bin/python benchmarks/bench_learned.py`). BEFORE is the frame
coder as it was at commit BASELINE, read from git and imported as a package of its own (its codeclab
imports made relative, as `codeclab codec export-learned` does); AFTER is today's; AFTER_SPIN is today's
with OpenMP's wait policy as it was (idle threads spin). All code BBB frames 0-31 at 448x256 (the
learned codec's evaluation frames) with the shipped weights. Every repetition runs each learned side in
a fresh process (the wait policy is fixed when torch loads), alternating which goes first, then x264
all-intra (`keyint: 1`) on the same frames; each figure is the median over repetitions of that
repetition's ratio. The bench also checks that every side writes the same payloads and decodes the
same pixels. Model loading is timed apart (setup_s). CUDA fps are measured only where torch sees a
GPU. Writes benchmarks/results/bench_learned.json.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from bench_summary import RUN_ID_ENV, cpu_model, usable_cores, write_stamped
from rich.console import Console
from rich.table import Table
from safetensors.torch import load_file

from codeclab.training.data import EVAL_SOURCES
from codeclab.worker.codecs import StreamHeader, make_codec
from codeclab.worker.codecs.learned.weights import builtin_weights, load_model, read_record
from codeclab.worker.sources import load_reference
from codeclab.worker.video import Video, read_y4m

REPO = Path(__file__).resolve().parents[1]
BASELINE = "302c6cd"  # main when issue 18's learned-codec work began: the code the 26/42 fps were measured on
LEARNED_DIR = "codeclab/worker/codecs/learned"
BEFORE_MODULES = ("model", "entropy", "frame_coder")
IMPORT = re.compile(r"^from codeclab\.worker\.codecs\.learned\.(\w+) import", re.MULTILINE)
SOURCE = EVAL_SOURCES[0]  # BBB frames 0-31 at 448x256
X264 = {"keyint": 1, "crf": 28, "threads": 1}  # bench_worker's all-intra anchor
THREADS = 2  # the learned codec's default `threads`
# before: the old code; after: today's; after_spin: today's code with OpenMP's wait policy as it was before
# codeclab set it (threads spin while idle), to tell the code's share of the gain from the policy's
SIDES = ("before", "after", "after_spin")
SPINNING = ("before", "after_spin")
Planes = tuple[np.ndarray, np.ndarray, np.ndarray]


def before_modules(workdir: Path, commit: str = BASELINE) -> tuple[ModuleType, ModuleType]:
    """The frame_coder and model modules of `commit`, imported from their sources in git as package
    `learned_before`."""
    package = workdir / "learned_before"
    package.mkdir(exist_ok=True)
    (package / "__init__.py").write_text("")
    for name in BEFORE_MODULES:
        source = subprocess.run(
            ["git", "show", f"{commit}:{LEARNED_DIR}/{name}.py"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout
        (package / f"{name}.py").write_text(IMPORT.sub(r"from .\1 import", source))
    sys.path.insert(0, str(workdir))
    return importlib.import_module("learned_before.frame_coder"), importlib.import_module("learned_before.model")


def load_side(side: str, workdir: Path) -> tuple[ModuleType, ModuleType]:
    """The frame_coder and model modules of one side."""
    if side == "before":
        return before_modules(workdir)
    from codeclab.worker.codecs.learned import frame_coder, model

    return frame_coder, model


def run_side(side: str, quality: int, frames: int, workdir: Path) -> dict[str, Any]:
    """One side's setup time, fps and output digests, in this process (a child of measure())."""
    coder_module, model_module = load_side(side, workdir)
    torch.set_num_threads(THREADS)
    video = read_y4m(workdir / "reference.y4m", count=frames)
    planes = [video.frame_planes(i) for i in range(video.frames)]
    path = builtin_weights(quality)
    setup_s, coder = timed(
        lambda: coder_module.FrameCoder(
            model_module.load_network(load_file(str(path)), read_record(path)), torch.device("cpu")
        )
    )
    encode_s, out = timed(lambda: [coder.encode(p) for p in planes])
    payloads = [item[0] if isinstance(item, tuple) else item for item in out]  # BEFORE returned a reconstruction too
    decode_s, decoded = timed(lambda: [coder.decode(p, video.width, video.height) for p in payloads])
    return {
        "setup_s": setup_s,
        "encode_fps": video.frames / encode_s,
        "decode_fps": video.frames / decode_s,
        "payloads_sha256": hashlib.sha256(b"".join(payloads)).hexdigest(),
        "decoded_sha256": digest(decoded),
    }


def side_in_child(side: str, quality: int, frames: int, workdir: Path) -> dict[str, Any]:
    """run_side in a fresh process: OpenMP's wait policy is fixed when torch loads, so each side needs its own."""
    env = dict(os.environ)
    if side in SPINNING:
        env.pop("GOMP_SPINCOUNT", None)  # as it was: the child imports torch before codeclab could set it
    command = [sys.executable, __file__, "--side", side, "--quality", str(quality), "--frames", str(frames),
               "--workdir", str(workdir)]  # fmt: skip
    proc = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    policy = env.get("GOMP_SPINCOUNT", "unset (libgomp's default: spin 300,000 times, then sleep)")
    return {**json.loads(proc.stdout.splitlines()[-1]), "omp_wait_policy": policy}


def timed(function: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = function()
    return time.perf_counter() - start, value


def digest(planes: list[Planes]) -> str:
    h = hashlib.sha256()
    for frame in planes:
        for plane in frame:
            h.update(plane.tobytes())
    return h.hexdigest()


def x264_fps(video: Video, y4m: Path, workdir: Path) -> tuple[float, float]:
    codec = make_codec("x264", X264)
    bitstream = workdir / f"x264{codec.bitstream_suffix}"
    bitstream.unlink(missing_ok=True)
    encode_s, _ = timed(lambda: codec.encode(y4m, bitstream, lambda _n: None))
    decode_s, _ = timed(lambda: codec.decode(bitstream, StreamHeader.of(video), lambda _n: None))
    return video.frames / encode_s, video.frames / decode_s


def measure(quality: int, repetitions: int, frames: int, workdir: Path, console: Console) -> dict[str, Any]:
    reference = load_reference({**SOURCE, "frames": frames}, workdir)  # written to its y4m frame by frame
    video, y4m = reference.video, reference.video.path
    rows: list[dict[str, float]] = []
    setup: dict[str, list[float]] = {side: [] for side in SIDES}
    outputs, policies = set(), {}
    for rep in range(repetitions):
        row: dict[str, float] = {}
        for side in SIDES if rep % 2 == 0 else SIDES[::-1]:  # alternate which runs first
            result = side_in_child(side, quality, frames, workdir)
            row[f"{side}_encode_fps"], row[f"{side}_decode_fps"] = result["encode_fps"], result["decode_fps"]
            setup[side].append(result["setup_s"])
            outputs.add((result["payloads_sha256"], result["decoded_sha256"]))
            policies[side] = result["omp_wait_policy"]
        row["x264_encode_fps"], row["x264_decode_fps"] = x264_fps(video, y4m, workdir)
        rows.append(row)
        console.print(f"repetition {rep + 1}/{repetitions}: " + ", ".join(f"{k} {v:.1f}" for k, v in row.items()))
    return {
        "quality": quality,
        "frames": video.frames,
        "size": [video.width, video.height],
        "identical_payloads_and_pixels": len(outputs) == 1,
        "omp_wait_policy": policies,
        "setup_s": {side: statistics.median(times) for side, times in setup.items()},
        "repetitions": rows,
        "median": {key: statistics.median(r[key] for r in rows) for key in rows[0]},
        "ratios": ratios(rows),
    }


def ratios(rows: list[dict[str, float]]) -> dict[str, float]:
    """Median over repetitions of each repetition's ratio: a side over before, and x264 all-intra over a side."""
    out = {}
    for step in ("encode", "decode"):
        for side in SIDES:
            out[f"{step}_x264_over_{side}"] = statistics.median(
                r[f"x264_{step}_fps"] / r[f"{side}_{step}_fps"] for r in rows
            )
            if side != "before":
                out[f"{step}_{side}_over_before"] = statistics.median(
                    r[f"{side}_{step}_fps"] / r[f"before_{step}_fps"] for r in rows
                )
    return out


def cuda_fps(quality: int, frames: int, workdir: Path) -> dict[str, float] | None:
    """Today's frame coder on CUDA (a GPU encode decodes on any device); None without a GPU."""
    if not torch.cuda.is_available():
        return None
    video = load_reference({**SOURCE, "frames": frames}, workdir).video
    planes = [video.frame_planes(i) for i in range(video.frames)]
    frame_coder, _ = load_side("after", workdir)
    coder = frame_coder.FrameCoder(load_model(builtin_weights(quality)).net, torch.device("cuda"))
    coder.encode(planes[0])  # warm-up: CUDA context and kernels
    encode_s, payloads = timed(lambda: [coder.encode(p) for p in planes])
    decode_s, _ = timed(lambda: [coder.decode(p, video.width, video.height) for p in payloads])
    return {"encode_fps": video.frames / encode_s, "decode_fps": video.frames / decode_s}


def print_table(console: Console, result: dict[str, Any]) -> None:
    median, ratio = result["median"], result["ratios"]
    table = Table(title=f"learned q{result['quality']} at 448x256, {result['frames']} frames, CPU, {THREADS} threads")
    for name in ("", "encode fps", "decode fps", "/ before (enc, dec)", "x264 all-intra / it (enc, dec)", "setup s"):
        table.add_column(name, justify="right")
    for side in SIDES:
        table.add_row(
            side,
            f"{median[f'{side}_encode_fps']:.1f}",
            f"{median[f'{side}_decode_fps']:.1f}",
            ""
            if side == "before"
            else f"{ratio[f'encode_{side}_over_before']:.2f}x, {ratio[f'decode_{side}_over_before']:.2f}x",
            f"{ratio[f'encode_x264_over_{side}']:.1f}x, {ratio[f'decode_x264_over_{side}']:.1f}x",
            f"{result['setup_s'][side]:.2f}",
        )
    table.add_row("x264 all-intra", f"{median['x264_encode_fps']:.1f}", f"{median['x264_decode_fps']:.1f}", "", "", "")
    console.print(table)
    console.print(f"identical payloads and pixels on every side: {result['identical_payloads_and_pixels']}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=f"${RUN_ID_ENV} sets the run id in the JSON (make bench sets one for all benches).",
    )
    parser.add_argument("--quality", type=int, default=3, choices=(1, 2, 3, 4))
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--frames", type=int, default=32, help="BBB frames from 0 (default 32)")
    parser.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)  # a child of measure()
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.side:
        print(json.dumps(run_side(args.side, args.quality, args.frames, args.workdir)))
        return
    console = Console(width=max(120, Console().width))
    with tempfile.TemporaryDirectory(prefix="codeclab-bench-learned-") as tmp:
        result = measure(args.quality, args.repetitions, args.frames, Path(tmp), console)
        result["cuda"] = cuda_fps(args.quality, args.frames, Path(tmp))
    print_table(console, result)
    result["conditions"] = {
        "baseline_commit": BASELINE,
        "source": {**SOURCE, "frames": args.frames},
        "torch": torch.__version__,
        "threads": f"learned: torch threads {THREADS}; x264: {X264}",
        "cpu_model": cpu_model(),
        "cores": usable_cores(),
        "python": platform.python_version(),
        "how": "each repetition runs before, after (alternating which first) and x264 on the same frames; "
        "fps from in-memory frames for learned, from the y4m file for x264 (ffmpeg process included); "
        "ratios are medians of per-repetition ratios",
    }
    console.print(f"wrote {write_stamped('bench_learned', result)}")


if __name__ == "__main__":
    main()
