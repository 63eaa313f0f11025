"""`make demo`: a small test-set evaluation through the local workflow, then its BD-rate table.

The sweep (codeclab/demo-sweep.json, package data) runs x264 and x265 at four CRFs each and the
built-in learned video codec at four of its six qualities on each sequence of builtin:mini (3
sequences, 2 classes).
It goes through the synthesized state machine on the local emulator: CreateRecord, one Batch
job (the worker as a local process) per point, and AggregateSweep. `codeclab report` then draws
the RD curves per sequence and computes BD-rates against x264: per sequence, per class, on average.
"""

from __future__ import annotations

import argparse
import json
import sys
from importlib import resources
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from codeclab.local import runner
from codeclab.local.faults import FaultPlanError
from codeclab.local.service import LocalService
from codeclab.local.template import CdkAppNotFound
from codeclab.report.report import make_report
from codeclab.report.runs import ReportError
from codeclab.terminal import progress_bar, show_record_progress, summary_table, wide_console

DEMO_SPEC = resources.files("codeclab") / "demo-sweep.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m codeclab.demo", description=__doc__)
    parser.add_argument("--runs-dir", type=Path, default=Path("runs"), help="where run folders go")
    args = parser.parse_args(argv)
    console = wide_console()
    try:
        with console.status("starting the local AWS emulator (synthesizing the stack if it changed)"):
            service = LocalService(args.runs_dir, kind="run").__enter__()
    except (CdkAppNotFound, FaultPlanError) as exc:  # local mode cannot start here, as asked
        console.print(f"[red]error:[/] {escape(str(exc))}")
        return 2
    try:
        outcome = _run_sweep(service, console)
    except KeyboardInterrupt:  # as `codeclab run` does: cancel, keep every point final in runs/, exit 130
        console.print(f"interrupted: {len(service.stop_all())} sweep(s) cancelled and kept in {args.runs_dir}/")
        return 130
    finally:
        service.__exit__(None, None, None)
    console.print(summary_table(outcome.points, title=f"codeclab demo: sweep {outcome.experiment_id} {outcome.status}"))
    out = args.runs_dir / "reports" / outcome.experiment_id
    try:
        make_report([outcome.experiment_id], args.runs_dir, "psnr_yuv", None, out, False, console)
    except ReportError as exc:
        console.print(f"[red]no report:[/] {exc}")
        return 1
    console.print(f"RD plot: {out / 'rd.png'}\ninteractive page: {out / 'rd.html'}")
    return 0 if outcome.succeeded else 1


def _run_sweep(service: LocalService, console: Console) -> runner.Outcome:
    assert service.cloud is not None
    submitted = runner.submit(service.cloud, json.loads(DEMO_SPEC.read_text(encoding="utf-8")))
    with progress_bar(console) as bar:
        task = bar.add_task("sweep", total=None)
        record = runner.wait(service.cloud, submitted, lambda r: show_record_progress(bar, task, r, "sweep"))
        bar.update(task, description=f"sweep: {record['status']}")
    return runner.collect(service.cloud, record, service.runs.root)


if __name__ == "__main__":
    sys.exit(main())
