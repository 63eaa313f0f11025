"""Local mode's fixed costs: `codeclab run` of a 1-frame experiment against the worker alone, side by side.

Each repeat runs three commands back to back, in alternating order, as fresh processes from the checkout:
`python -m codeclab.worker SPEC --out DIR`, `python -m codeclab.cli run SPEC --own-stack --runs-dir DIR` (a
stack of its own, as with no serve running) and `python -m codeclab.cli run SPEC --runs-dir SERVED`, where a
`codeclab serve` started before the repeats runs on SERVED (run joins its warm stack). The figures are the
medians over the repeats of each repeat's ratios (run wall / worker wall), so a load that moves during the
run moves both sides of a ratio alike. The breakdown comes from one more fresh process per repeat that does
what `codeclab run` does, timing each part: the CLI's imports, the emulator's imports, synthesis (or the
cached template), the emulator's start, the deploy, the execution, and within it the Batch job (the worker
process, start-up included) and the worker's own total_s.

Then the raw frames: `codeclab run --own-stack` of 120 frames of BBB 720p (x264 ultrafast), keeping
reference.y4m and recon.y4m against the same spec with `"artifacts": {"reference": false, "recon": false}`,
alternated, with the size of each runs/ folder.
Prints a rich table and writes benchmarks/results/bench_overhead.json.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench_summary import RUN_ID_ENV, write_stamped
from rich.table import Table

from codeclab.terminal import wide_console

REPO = Path(__file__).resolve().parents[1]
SPEC = {
    "name": "bench-overhead-1-frame",
    "source": {"clip": "builtin:carphone", "frames": 1},
    "codec": {"name": "x264", "params": {"crf": 28}},
    "metrics": {"vmaf": False},
}
RAW_SPEC = {
    "name": "bench-raw-frames",
    "source": {"clip": "builtin:bbb", "frames": 120},
    "codec": {"name": "x264", "params": {"crf": 35, "preset": "ultrafast"}},
    "metrics": {"vmaf": False},
}
LEAN = {"artifacts": {"reference": False, "recon": False}}
# What `codeclab run` does, timed part by part, in a fresh process (the parts print as one JSON line).
BREAKDOWN = """\
import json, sys, tempfile, time
from pathlib import Path
t0 = time.perf_counter()
import codeclab.cli
t1 = time.perf_counter()
from codeclab.local import runner
from codeclab.local.service import LocalService
t2 = time.perf_counter()
spec = json.loads(Path(sys.argv[1]).read_text())
with tempfile.TemporaryDirectory() as runs, LocalService(Path(runs), kind="run", jobs=1) as service:
    t3 = time.perf_counter()
    outcome = runner.run(service.cloud, spec, Path(runs))
    t4 = time.perf_counter()
    assert outcome.succeeded, outcome.record.get("error")
    result = json.loads((outcome.folder / "result.json").read_text())
    timings = service.cloud.timings
    job = service.cloud.jobs.durations[outcome.experiment_id]
print(json.dumps({"cli_imports_s": t1 - t0, "emulator_imports_s": t2 - t1, "template_s": timings["template_s"],
                  "emulator_start_s": timings["emulator_start_s"], "deploy_s": timings["deploy_s"],
                  "service_start_s": t3 - t2, "execution_s": t4 - t3, "job_s": job,
                  "worker_s": result["timings"]["total_s"], "stop_s": time.perf_counter() - t4}))
"""


def _env() -> dict[str, str]:
    """This checkout first on the path (a shared virtualenv may point at another), the emulator's warnings off."""
    return {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}".rstrip(os.pathsep),
            "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20"}  # fmt: skip


def _timed(command: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    proc = subprocess.run(command, cwd=REPO, env=_env(), capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {proc.returncode}:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return wall, proc.stdout


def worker_alone(spec: Path, scratch: Path) -> float:
    return _timed([sys.executable, "-m", "codeclab.worker", str(spec), "--out", str(scratch / "worker"), "--quiet"])[0]


def codeclab_run(spec: Path, scratch: Path) -> float:
    command = [sys.executable, "-m", "codeclab.cli", "run", str(spec), "--own-stack", "--runs-dir", str(scratch)]
    return _timed(command)[0]


def joined_run(spec: Path, served: Path) -> float:
    return _timed([sys.executable, "-m", "codeclab.cli", "run", str(spec), "--runs-dir", str(served)])[0]


@contextmanager
def serving(runs: Path) -> Iterator[None]:
    """A `codeclab serve` on `runs` for the block's duration, its stack up before the block starts."""
    command = [sys.executable, "-m", "codeclab.cli", "serve", "--port", "0", "--runs-dir", str(runs)]
    serve = subprocess.Popen(command, cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = serve.stdout.readline()  # type: ignore[union-attr]
        if "codeclab API on " not in line:
            raise RuntimeError(f"codeclab serve did not start: {line}{serve.stderr.read()}")  # type: ignore[union-attr]
        yield
    finally:
        serve.send_signal(signal.SIGINT)
        serve.communicate(timeout=120)


def breakdown(spec: Path) -> dict[str, float]:
    parts: dict[str, float] = json.loads(_timed([sys.executable, "-c", BREAKDOWN, str(spec)])[1].splitlines()[-1])
    return parts


def one_repeat(index: int, spec: Path, served: Path) -> dict[str, Any]:
    """The three sides, in forward order on even repeats and backward on odd ones, then the breakdown."""
    with tempfile.TemporaryDirectory(prefix="bench-overhead-") as folder:
        scratch = Path(folder)
        sides = {
            "worker_s": lambda: worker_alone(spec, scratch),
            "run_s": lambda: codeclab_run(spec, scratch / "runs"),
            "joined_s": lambda: joined_run(spec, served),
        }
        order = list(sides) if index % 2 == 0 else list(reversed(sides))
        wall = {side: sides[side]() for side in order}
    return {**wall, "ratio": wall["run_s"] / wall["worker_s"], "ratio_joined": wall["joined_s"] / wall["worker_s"],
            "breakdown": breakdown(spec)}  # fmt: skip


def raw_frames_repeat(index: int, kept: Path, lean: Path) -> dict[str, float]:
    """One pair: the run keeping the raw frames and the lean one, in alternating order, and their runs/ sizes."""
    with tempfile.TemporaryDirectory(prefix="bench-raw-frames-") as folder:
        runs = {"kept": (kept, Path(folder) / "kept"), "lean": (lean, Path(folder) / "lean")}
        order = list(runs) if index % 2 == 0 else list(reversed(runs))
        wall = {side: codeclab_run(*runs[side]) for side in order}
        megabytes = {side: _megabytes(runs[side][1]) for side in runs}
    return {"kept_s": wall["kept"], "lean_s": wall["lean"], "ratio": wall["kept"] / wall["lean"],
            "kept_mb": megabytes["kept"], "lean_mb": megabytes["lean"]}  # fmt: skip


def _megabytes(folder: Path) -> float:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file()) / 1e6


def summarize_raw_frames(pairs: list[dict[str, float]]) -> dict[str, float]:
    return {key + "_median": statistics.median(pair[key] for pair in pairs) for key in pairs[0]} | {
        "ratio_min": min(pair["ratio"] for pair in pairs),
        "ratio_max": max(pair["ratio"] for pair in pairs),
    }


def summarize(repeats: list[dict[str, Any]]) -> dict[str, Any]:
    ratios, joined = [r["ratio"] for r in repeats], [r["ratio_joined"] for r in repeats]
    parts = repeats[0]["breakdown"].keys()
    return {
        "ratio_median": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "ratio_joined_median": statistics.median(joined),
        "ratio_joined_min": min(joined),
        "ratio_joined_max": max(joined),
        "worker_s_median": statistics.median(r["worker_s"] for r in repeats),
        "run_s_median": statistics.median(r["run_s"] for r in repeats),
        "joined_s_median": statistics.median(r["joined_s"] for r in repeats),
        "breakdown_median_s": {p: statistics.median(r["breakdown"][p] for r in repeats) for p in parts},
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"${RUN_ID_ENV} sets the run id in the JSON (make bench sets one for all benches).",
    )
    parser.add_argument("--repeats", type=int, default=5, help="side-by-side pairs (median of their ratios)")
    parser.add_argument("--raw-repeats", type=int, default=3, help="pairs of 120-frame runs keeping raw frames or not")
    args = parser.parse_args()
    if args.repeats < 1 or args.raw_repeats < 1:
        parser.error("--repeats and --raw-repeats must be at least 1")
    console = wide_console()
    with tempfile.TemporaryDirectory(prefix="bench-overhead-spec-") as folder:
        spec, kept, lean = Path(folder) / "one-frame.json", Path(folder) / "kept.json", Path(folder) / "lean.json"
        spec.write_text(json.dumps(SPEC))
        kept.write_text(json.dumps(RAW_SPEC))
        lean.write_text(json.dumps(RAW_SPEC | LEAN))
        codeclab_run(spec, Path(folder) / "runs")  # untimed: synthesizes the template if changed, warms caches
        served = Path(folder) / "served"
        with serving(served):
            joined_run(spec, served)  # untimed: the serve's first job starts its warm worker
            repeats = [one_repeat(index, spec, served) for index in range(args.repeats)]
        raw_pairs = [raw_frames_repeat(index, kept, lean) for index in range(args.raw_repeats)]
    summary = summarize(repeats)
    raw_frames = summarize_raw_frames(raw_pairs)
    console.print(_table(summary, args.repeats))
    console.print(_raw_frames_table(raw_frames, args.raw_repeats))
    conditions = {"spec": SPEC, "repeats": args.repeats,
                  "order": "worker, run --own-stack, run joining a serve; backward on odd repeats",
                  "statistic": "median of the per-repeat ratios run wall / worker wall",
                  "raw_frames": {"spec": RAW_SPEC, "lean": LEAN, "repeats": args.raw_repeats,
                                 "statistic": "median of per-pair ratios kept / lean wall, alternated"}}  # fmt: skip
    out = write_stamped("bench_overhead", {"conditions": conditions, **summary, "repeats": repeats,
                                           "raw_frames": raw_frames, "raw_frames_pairs": raw_pairs})  # fmt: skip
    console.print(f"wrote {out}")


def _table(summary: dict[str, Any], repeats: int) -> Table:
    table = Table(title=f"1-frame x264: `codeclab run` against the worker alone (median of {repeats})")
    table.add_column("what")
    table.add_column("seconds", justify="right")
    table.add_row("worker alone (python -m codeclab.worker)", f"{summary['worker_s_median']:.3f}")
    table.add_row("codeclab run --own-stack (no serve running)", f"{summary['run_s_median']:.3f}")
    table.add_row("codeclab run joining a running serve", f"{summary['joined_s_median']:.3f}")
    spread = f"{summary['ratio_min']:.2f}-{summary['ratio_max']:.2f}"
    table.add_row("ratio run --own-stack / worker (median of ratios)", f"{summary['ratio_median']:.2f}x ({spread})")
    spread = f"{summary['ratio_joined_min']:.2f}-{summary['ratio_joined_max']:.2f}"
    table.add_row("ratio run joining serve / worker", f"{summary['ratio_joined_median']:.2f}x ({spread})")
    for part, seconds in summary["breakdown_median_s"].items():
        table.add_row(f"  breakdown: {part}", f"{seconds:.3f}")
    return table


def _raw_frames_table(raw: dict[str, float], repeats: int) -> Table:
    table = Table(title=f"120 frames of 720p: `codeclab run` keeping the raw frames or not (median of {repeats})")
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row(
        "keeping reference.y4m and recon.y4m", f"{raw['kept_s_median']:.2f} s, {raw['kept_mb_median']:.1f} MB"
    )
    table.add_row("keeping neither", f"{raw['lean_s_median']:.2f} s, {raw['lean_mb_median']:.1f} MB")
    spread = f"{raw['ratio_min']:.2f}-{raw['ratio_max']:.2f}"
    table.add_row("ratio kept / lean (median of ratios)", f"{raw['ratio_median']:.2f}x ({spread})")
    return table


if __name__ == "__main__":
    main()
