"""`make demo`: a few codecs on carphone, each a real experiment through the local workflow.

Each spec goes through the synthesized state machine on the local emulator: CreateRecord,
the Batch job (the worker as a local process), RecordResult. The table shows each
experiment's id and final status; runs/<experiment_id>/ holds its record and artifacts.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from codeclab.local import runner
from codeclab.local.service import LocalService
from codeclab.terminal import progress_bar, show_record_progress, summary_table, wide_console

REPO = Path(__file__).resolve().parents[1]
DEMO_SPECS = ("x264.json", "x264-intra.json", "jpeg.json")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m codeclab.demo", description=__doc__)
    parser.add_argument("--runs-dir", type=Path, default=REPO / "runs", help="where run folders go")
    args = parser.parse_args(argv)
    console = wide_console()
    with console.status("starting the local AWS emulator (synthesizing the stack if it changed)"):
        service = LocalService(args.runs_dir).__enter__()
    try:
        outcomes = [_run_one(service, REPO / "examples" / name, console) for name in DEMO_SPECS]
    finally:
        service.__exit__(None, None, None)
    console.print(summary_table([o.record for o in outcomes], title="codeclab demo: carphone 176x144, 32 frames"))
    console.print(_conditions_line(outcomes))
    for outcome in outcomes:
        console.print(f"  {outcome.experiment_id} ({outcome.record['spec']['name']}): {outcome.folder}")
    return 0 if all(o.succeeded for o in outcomes) else 1


def _run_one(service: LocalService, spec_path: Path, console: Any) -> runner.Outcome:
    assert service.cloud is not None
    submitted = runner.submit(service.cloud, json.loads(spec_path.read_text()))
    with progress_bar(console) as bar:
        task = bar.add_task(spec_path.stem, total=None)

        record = runner.wait(service.cloud, submitted, lambda r: show_record_progress(bar, task, r, spec_path.stem))
        bar.update(task, description=f"{spec_path.stem}: {record['status']}")
    return runner.collect(service.cloud, record, service.runs_dir)


def _conditions_line(outcomes: list[runner.Outcome]) -> str:
    done = [o for o in outcomes if o.succeeded]
    if not done:
        return "no experiment succeeded; see the error column and each folder's worker.log"
    conditions = done[0].record["conditions"]
    src = conditions["source"]
    return (
        f"Conditions: {src['clip']} frames {src['start']}..{src['start'] + src['frames'] - 1}, "
        f"{src['size'][0]}x{src['size'][1]} yuv420p at {src['fps']} fps; PSNR-YUV = (6Y+U+V)/8; "
        f"SSIM = Gaussian (Wang 2004) on Y; {conditions['codec']['implementation'].split(' (')[0]}; 1 encoder thread"
    )


if __name__ == "__main__":
    sys.exit(main())
