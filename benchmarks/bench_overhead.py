"""Local mode's fixed costs: `codeclab run` of a 1-frame experiment against the worker alone, side by side.

Each repeat runs the two commands back to back, in alternating order, as fresh processes from the checkout:
`python -m codeclab.worker SPEC --out DIR` and `python -m codeclab.cli run SPEC --runs-dir DIR`. The figure is
the median over the repeats of each repeat's ratio (run wall / worker wall), so a load that moves during the
run moves both sides of a ratio alike. The breakdown comes from one more fresh process per repeat that does
what `codeclab run` does, timing each part: the CLI's imports, the emulator's imports, synthesis (or the
cached template), the emulator's start, the deploy, the execution, and within it the Batch job (the worker
process, start-up included) and the worker's own total_s.
Prints a rich table and writes benchmarks/results/bench_overhead.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
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
with tempfile.TemporaryDirectory() as runs, LocalService(Path(runs), kind="run") as service:
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
    return _timed([sys.executable, "-m", "codeclab.cli", "run", str(spec), "--runs-dir", str(scratch / "runs")])[0]


def breakdown(spec: Path) -> dict[str, float]:
    parts: dict[str, float] = json.loads(_timed([sys.executable, "-c", BREAKDOWN, str(spec)])[1].splitlines()[-1])
    return parts


def one_repeat(index: int, spec: Path) -> dict[str, Any]:
    """Both sides, the worker first on even repeats and last on odd ones, then the breakdown."""
    with tempfile.TemporaryDirectory(prefix="bench-overhead-") as folder:
        scratch = Path(folder)
        if index % 2 == 0:
            worker = worker_alone(spec, scratch)
            run = codeclab_run(spec, scratch)
        else:
            run = codeclab_run(spec, scratch)
            worker = worker_alone(spec, scratch)
    return {"worker_s": worker, "run_s": run, "ratio": run / worker, "breakdown": breakdown(spec)}


def summarize(repeats: list[dict[str, Any]]) -> dict[str, Any]:
    ratios = [r["ratio"] for r in repeats]
    parts = repeats[0]["breakdown"].keys()
    return {
        "ratio_median": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "worker_s_median": statistics.median(r["worker_s"] for r in repeats),
        "run_s_median": statistics.median(r["run_s"] for r in repeats),
        "breakdown_median_s": {p: statistics.median(r["breakdown"][p] for r in repeats) for p in parts},
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"${RUN_ID_ENV} sets the run id in the JSON (make bench sets one for all benches).",
    )
    parser.add_argument("--repeats", type=int, default=5, help="side-by-side pairs (median of their ratios)")
    args = parser.parse_args()
    console = wide_console()
    with tempfile.TemporaryDirectory(prefix="bench-overhead-spec-") as folder:
        spec = Path(folder) / "one-frame.json"
        spec.write_text(json.dumps(SPEC))
        codeclab_run(spec, Path(folder))  # untimed: synthesizes the template if its sources changed, warms caches
        repeats = [one_repeat(index, spec) for index in range(args.repeats)]
    summary = summarize(repeats)
    console.print(_table(summary, args.repeats))
    conditions = {"spec": SPEC, "repeats": args.repeats, "order": "alternating, worker first on even repeats",
                  "statistic": "median of the per-repeat ratios run wall / worker wall"}  # fmt: skip
    out = write_stamped("bench_overhead", {"conditions": conditions, **summary, "repeats": repeats})
    console.print(f"wrote {out}")


def _table(summary: dict[str, Any], repeats: int) -> Table:
    table = Table(title=f"1-frame x264: `codeclab run` against the worker alone (median of {repeats})")
    table.add_column("what")
    table.add_column("seconds", justify="right")
    table.add_row("worker alone (python -m codeclab.worker)", f"{summary['worker_s_median']:.3f}")
    table.add_row("codeclab run", f"{summary['run_s_median']:.3f}")
    spread = f"{summary['ratio_min']:.2f}-{summary['ratio_max']:.2f}"
    table.add_row("ratio run / worker (median of ratios)", f"{summary['ratio_median']:.2f}x ({spread})")
    for part, seconds in summary["breakdown_median_s"].items():
        table.add_row(f"  breakdown: {part}", f"{seconds:.3f}")
    return table


if __name__ == "__main__":
    main()
