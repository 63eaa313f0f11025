"""The local workflow's own cost: emulator start, deploy from the template, and per-execution overhead.

Overhead per execution = the wall time from StartExecution to the final record in runs/,
minus the Batch job's wall time (the worker process, start-up included), and also minus
only the worker's own measured time (result.json total_s), so both views are shown.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from bench_summary import RUN_ID_ENV, run_stamp
from rich.table import Table

from codeclab.local import runner
from codeclab.local.emulator import LocalCloud
from codeclab.terminal import wide_console

SPEC = {
    "name": "bench-1-frame",
    "source": {"clip": "builtin:carphone", "frames": 1},
    "codec": {"name": "jpeg", "params": {"quality": 75}},
    "metrics": {"vmaf": False},
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__,
        epilog=f"${RUN_ID_ENV} sets the run id in the JSON (make bench sets one for all benches).",
    )
    parser.add_argument("--runs", type=int, default=5, help="1-frame experiments to time (median reported)")
    args = parser.parse_args()
    console = wide_console()
    started = time.perf_counter()
    with LocalCloud() as cloud, tempfile.TemporaryDirectory() as runs:
        up = time.perf_counter() - started
        rows = [_one(cloud, Path(runs)) for _ in range(args.runs)]
    table = Table(title=f"local workflow overhead (1-frame jpeg experiments, median of {args.runs})")
    table.add_column("what")
    table.add_column("seconds", justify="right")
    for name, value in (
        ("synthesis or cached template", cloud.timings["template_s"]),
        ("emulator start (moto server, config, patches)", cloud.timings["emulator_start_s"]),
        ("deploy from the template", cloud.timings["deploy_s"]),
        ("start-up in all", up),
        ("execution wall time, StartExecution to runs/", statistics.median(r["wall"] for r in rows)),
        ("  of which the Batch job (worker process)", statistics.median(r["job"] for r in rows)),
        ("  of which the worker's own time (result.json)", statistics.median(r["worker"] for r in rows)),
        ("overhead per execution beyond the job", statistics.median(r["wall"] - r["job"] for r in rows)),
        (
            "overhead per execution beyond the worker's own time",
            statistics.median(r["wall"] - r["worker"] for r in rows),
        ),
    ):
        table.add_row(name, f"{value:.3f}")
    console.print(table)
    figures = {
        "run": run_stamp(),
        "conditions": {"spec": SPEC, "runs": args.runs, "statistic": "median over the runs, wall clock"},
        "median": _medians(rows),
        "startup_s": up,
        **cloud.timings,
        "runs": rows,
    }
    out = Path(__file__).parent / "results" / "bench_workflow.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    console.print(f"wrote {out}")


def _medians(rows: list[dict[str, float]]) -> dict[str, float]:
    """The table's per-execution figures, so the summary reads them rather than recomputing them."""
    return {
        "wall_s": statistics.median(r["wall"] for r in rows),
        "job_s": statistics.median(r["job"] for r in rows),
        "worker_s": statistics.median(r["worker"] for r in rows),
        "overhead_beyond_job_s": statistics.median(r["wall"] - r["job"] for r in rows),
        "overhead_beyond_worker_s": statistics.median(r["wall"] - r["worker"] for r in rows),
    }


def _one(cloud: LocalCloud, runs: Path) -> dict[str, float]:
    started = time.perf_counter()
    outcome = runner.run(cloud, SPEC, runs)
    wall = time.perf_counter() - started
    assert outcome.succeeded, outcome.record.get("error")
    result = json.loads((outcome.folder / "result.json").read_text())
    return {"wall": wall, "job": cloud.jobs.durations[outcome.experiment_id], "worker": result["timings"]["total_s"]}


if __name__ == "__main__":
    main()
