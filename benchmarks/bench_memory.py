"""The worker's peak memory against the clip's length: 16 and 132 frames of 720p, side by side.

Run by `make bench`. Each case runs the worker (`python -m codeclab.worker`, VMAF off) as its own
process, alternating the short and the long clip `--repeats` times; the ratio long/short is taken
per pair and the median reported. Three figures per run: the worker's own peak and its largest
ffmpeg child's, as result.json records them (docs/worker.md#memory), and the largest of the worker
and any of its children as the kernel reports it to wait4() on the worker process (ru_maxrss, which
includes reaped children; this bench process is small, so what the worker inherits from it at exec
is far below the figures). `--worker-root` runs another checkout's worker, for a before/after
comparison of the code (not part of `make bench`); before this change the worker recorded
ru_maxrss for itself and for its children, both of which included what was inherited at exec.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench_summary import REPO, write_stamped
from rich.console import Console
from rich.table import Table

SHORT, LONG = 16, 132
CASES: dict[str, dict[str, Any]] = {
    "x264 1280x720": {
        "source": {"clip": "builtin:bbb"},
        "codec": {"name": "x264", "params": {"crf": 28, "preset": "medium", "threads": 1}},
    },
    "learned 448x256": {
        "source": {"clip": "builtin:bbb", "size": [448, 256]},
        "codec": {"name": "learned", "params": {"quality": 2, "threads": 1}},
    },
}
PINNED = {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=2, help="pairs of (short, long) runs per case")
    parser.add_argument("--worker-root", type=Path, default=REPO, help="the checkout whose worker runs")
    parser.add_argument("--out", default="bench_memory", help="results/<OUT>.json")
    args = parser.parse_args()
    console = Console()
    measured = {name: measure_case(case, args.repeats, args.worker_root.resolve()) for name, case in CASES.items()}
    show(console, measured)
    conditions = {
        "frames": [SHORT, LONG],
        "repeats": args.repeats,
        "worker_root": str(args.worker_root.resolve()),
        "cases": CASES,
        "vmaf": "off",
        "statistic": "median over the pairs of peak(132 frames) / peak(16 frames); pairs alternate short, long",
    }
    out = write_stamped(args.out, {"conditions": conditions, "measured": measured})
    console.print(f"wrote {out}")


def measure_case(case: dict[str, Any], repeats: int, root: Path) -> dict[str, Any]:
    runs: list[dict[str, float]] = []
    for _ in range(repeats):
        runs += [run_worker(case, SHORT, root), run_worker(case, LONG, root)]
    pairs = list(zip(runs[::2], runs[1::2], strict=True))

    def ratio(key: str) -> float:
        return statistics.median(long[key] / short[key] for short, long in pairs)

    def median(frames: int, key: str) -> float:
        return statistics.median(run[key] for run in runs if run["frames"] == frames)

    spread = [long["worker_mb"] / short["worker_mb"] for short, long in pairs]
    keys = ("worker_mb", "children_mb", "largest_process_mb")
    return {
        "short": {key: median(SHORT, key) for key in keys},
        "long": {key: median(LONG, key) for key in keys},
        "ratio": {key: ratio(key) for key in keys},
        "ratio_range": [min(spread), max(spread)],
        "runs": runs,
    }


def run_worker(case: dict[str, Any], frames: int, root: Path) -> dict[str, float]:
    spec = {"name": f"memory-{frames}", **case, "source": {**case["source"], "frames": frames}}
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        spec_path, out = Path(tmp) / "spec.json", Path(tmp) / "out"
        spec_path.write_text(json.dumps(spec))
        env = {**os.environ, **PINNED, "PYTHONPATH": str(root)}
        command = [sys.executable, "-m", "codeclab.worker", str(spec_path), "--out", str(out), "--no-vmaf", "--quiet"]
        proc = subprocess.Popen(command, env=env, cwd=root)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise SystemExit(f"the worker failed ({proc.returncode}): {(out / 'worker.log').read_text()[-2000:]}")
        result = json.loads((out / "result.json").read_text())
    return {
        "frames": frames,
        "worker_mb": result["resources"]["peak_rss_mb_worker"],
        "children_mb": result["resources"]["peak_rss_mb_children"],
        "largest_process_mb": usage.ru_maxrss / 1024,
        "total_s": result["timings"]["total_s"],
    }


def show(console: Console, measured: dict[str, dict[str, Any]]) -> None:
    table = Table(title=f"peak RSS (MiB), {SHORT} against {LONG} frames, median")
    for column in ("case", "what", f"{SHORT} frames", f"{LONG} frames", "ratio"):
        table.add_column(column, justify="left" if column in ("case", "what") else "right")
    labels = {
        "worker_mb": "worker (result.json)",
        "children_mb": "largest ffmpeg child (result.json)",
        "largest_process_mb": "worker or a child, the larger (wait4)",
    }
    for name, m in measured.items():
        for key, label in labels.items():
            table.add_row(name, label, f"{m['short'][key]:.0f}", f"{m['long'][key]:.0f}", f"{m['ratio'][key]:.2f}")
    console.print(table)


if __name__ == "__main__":
    main()
