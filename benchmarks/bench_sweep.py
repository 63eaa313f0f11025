"""A local sweep's per-point workflow overhead, through the Distributed Map, at 24 and at 300 one-frame points.

Overhead per point = (sweep wall time x concurrency - the points' summed Batch job wall time) / points: what the
workflow adds to each point while `concurrency` job slots are busy (CreatePoint, RecordResult, the Map's own
scheduling, AggregateSweep and collecting into runs/ spread over the points). The target is under 0.5 s.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_summary import RUN_ID_ENV, write_stamped
from rich.table import Table

from codeclab.experiments.sweep import point_id
from codeclab.local import runner
from codeclab.local.service import LocalService
from codeclab.terminal import wide_console

TARGET_S = 0.5
CONCURRENCY = 4  # the local stack's bound: cdk.json's maxVcpus (16) over a job's 4 vCPUs


PRESETS = ["ultrafast", "superfast", "veryfast", "faster", "fast", "medium"]


def sweep_spec(points: int) -> dict[str, Any]:
    """`points` one-frame x264 points: points/6 CRF entries crossed with six presets (a grid list or the codec
    list holds at most 64 entries, so a big sweep is a product)."""
    crfs = [{"name": "x264", "params": {"crf": crf}} for crf in range(points // len(PRESETS))]
    return {
        "name": f"bench-sweep-{points}",
        "source": {"clip": "builtin:carphone", "frames": 1},
        "codec": {"name": "x264"},
        "metrics": {"vmaf": False},
        "sweep": {"codecs": crfs, "preset": PRESETS, "max_concurrency": CONCURRENCY},
    }


def measure(service: LocalService, points: int) -> dict[str, float]:
    """One sweep as `codeclab run` runs it: each point kept in runs/ as it ends, the rest collected at the end."""
    cloud = service.cloud
    assert cloud is not None
    started = time.perf_counter()
    record = runner.wait(cloud, runner.submit(cloud, sweep_spec(points)))
    outcome = runner.collect(cloud, record, service.runs.root)
    wall = time.perf_counter() - started
    # the sweep ran to the end: every point final and succeeded (300 is more than the old inline Map's 256)
    assert outcome.succeeded, outcome.record.get("error")
    assert [p["status"] for p in outcome.points] == ["SUCCEEDED"] * points
    jobs = sum(cloud.jobs.durations[point_id(outcome.experiment_id, i)] for i in range(points))
    return {"points": points, "wall_s": wall, "jobs_s": jobs,
            "overhead_per_point_s": (wall * CONCURRENCY - jobs) / points}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, epilog=f"${RUN_ID_ENV} sets the run id in the JSON (make bench sets one for all)."
    )
    parser.add_argument("--points", type=int, nargs="+", default=[24, 300], help="sweep sizes to time")
    args = parser.parse_args()
    console = wide_console()
    with tempfile.TemporaryDirectory() as runs, LocalService(Path(runs), kind="run") as service:
        rows = [measure(service, n) for n in args.points]
    table = Table(title=f"local sweep overhead per point (1-frame x264 points, concurrency {CONCURRENCY})")
    for column in ("points", "wall s", "Σ job s", "overhead per point s", f"< {TARGET_S} s"):
        table.add_column(column, justify="right")
    for row in rows:
        ok = "yes" if row["overhead_per_point_s"] < TARGET_S else "NO"
        table.add_row(str(row["points"]), f"{row['wall_s']:.1f}", f"{row['jobs_s']:.1f}",
                      f"{row['overhead_per_point_s']:.3f}", ok)  # fmt: skip
    console.print(table)
    spec = sweep_spec(6) | {"sweep": "x264 crf 0..points/6 x the six presets"}
    conditions = {"spec": spec, "concurrency": CONCURRENCY, "target_s": TARGET_S,
                  "statistic": "one sweep per size, wall clock"}  # fmt: skip
    console.print(f"wrote {write_stamped('bench_sweep', {'conditions': conditions, 'sweeps': rows})}")


if __name__ == "__main__":
    main()
