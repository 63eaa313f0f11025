"""`make faults`: inject each fault into a real local workflow run and print what became of the experiment.

One row per fault: the final status and error type, the alerts sent, whether the record is
in the store and in runs/, and the time from submission to a final record. A row is correct
when status and type are the expected ones, exactly one alert went out for a failure (none
for a success), and the record exists in both places. The script exits 1 if any row is not.

Faults covered so far: the worker's (crash, SIGKILL, hang, slow but steady), a job past its
time limit, an exception in each workflow Lambda, and an aborted execution.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from rich.table import Table

from codeclab.local import runner
from codeclab.local.emulator import LAMBDA_FAULT_ENV, LocalCloud
from codeclab.terminal import wide_console
from codeclab.worker.faults import FAULT_ENV


@dataclass(frozen=True)
class Fault:
    name: str
    expected_status: str
    expected_type: str | None
    env: dict[str, str] = field(default_factory=dict)
    limits: dict[str, int] = field(default_factory=dict)
    frames: int = 4
    abort_after_running: bool = False


FAULTS = (
    Fault("none (control)", "SUCCEEDED", None),
    Fault("worker crash (exception)", "FAILED", "INTERNAL", {FAULT_ENV: "crash:encode@1"}),
    Fault("SIGKILL mid-encode (as OOM)", "FAILED", "INTERNAL", {FAULT_ENV: "kill:encode@2"}),
    Fault("hang (stall watchdog)", "FAILED", "STALLED", {FAULT_ENV: "hang:encode@1"}, {"stall_seconds": 2}),
    Fault(
        "slow but steady, under the stall limit",
        "SUCCEEDED",
        None,
        {FAULT_ENV: "slow:encode:0.5"},
        {"stall_seconds": 5},
    ),
    Fault(
        "job past its time limit",
        "TIMED_OUT",
        "TIMEOUT",
        {FAULT_ENV: "hang:encode@1"},
        {"timeout_seconds": 10, "stall_seconds": 60},
    ),
    Fault("CreateRecord raises", "FAILED", "INTERNAL", {LAMBDA_FAULT_ENV: "create_record"}),
    Fault("RecordResult raises", "FAILED", "INTERNAL", {LAMBDA_FAULT_ENV: "record_result"}),
    Fault(
        "MarkFailed raises (after a codec error)",
        "FAILED",
        "CODEC_ERROR",
        {LAMBDA_FAULT_ENV: "mark_failed", FAULT_ENV: "fail:encode@1"},
    ),
    Fault(
        "execution aborted (StopExecution)",
        "ABORTED",
        "ABORTED",
        {FAULT_ENV: "slow:encode:0.5"},
        frames=32,
        abort_after_running=True,
    ),
)


@dataclass(frozen=True)
class Row:
    fault: Fault
    status: str
    error_type: str | None
    alerts: int
    in_store: bool
    in_runs: bool
    seconds: float

    @property
    def correct(self) -> bool:
        alerts_ok = self.alerts == (0 if self.fault.expected_status == "SUCCEEDED" else 1)
        outcome_ok = (self.status, self.error_type) == (self.fault.expected_status, self.fault.expected_type)
        return outcome_ok and alerts_ok and self.in_store and self.in_runs


def spec(fault: Fault) -> dict[str, Any]:
    return {
        "name": "fault-matrix",
        "source": {"clip": "builtin:carphone", "frames": fault.frames},
        "codec": {"name": "jpeg", "params": {"quality": 50}},
        "limits": {"timeout_seconds": 120, "stall_seconds": 30, **fault.limits},
        "metrics": {"vmaf": False},
    }


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run_fault(cloud: LocalCloud, fault: Fault, runs_dir: Path) -> Row:
    started = time.monotonic()
    with environment(fault.env):
        submitted = runner.submit(cloud, spec(fault))
        if fault.abort_after_running:
            threading.Thread(target=_abort_when_running, args=(cloud, submitted), daemon=True).start()
        try:
            record = runner.wait(cloud, submitted)
        except RuntimeError:  # the execution ended but left no final record: a lost experiment
            record = cloud.services().store.find(submitted["experiment_id"]) or {}
    seconds = time.monotonic() - started
    experiment_id = submitted["experiment_id"]
    in_store = bool(record) and cloud.services().store.find(experiment_id) is not None
    if in_store:
        runner.collect(cloud, record, runs_dir)
    return Row(
        fault=fault,
        status=record.get("status", "(none)"),
        error_type=(record.get("error") or {}).get("type"),
        alerts=len(cloud.alerts_for(experiment_id)),
        in_store=in_store,
        in_runs=(runs_dir / experiment_id / runner.RECORD_FILE).is_file(),
        seconds=seconds,
    )


def _abort_when_running(cloud: LocalCloud, submitted: dict[str, Any]) -> None:
    store, deadline = cloud.services().store, time.monotonic() + 60
    while (store.find(submitted["experiment_id"]) or {}).get("status") != "RUNNING":
        if time.monotonic() > deadline:
            return
        time.sleep(0.2)
    boto3.client("stepfunctions").stop_execution(executionArn=submitted["execution_arn"], cause="fault matrix")


def table(rows: list[Row]) -> Table:
    out = Table(title="codeclab fault matrix (local workflow, carphone jpeg)")
    for column in ("fault", "final status", "error type", "expected", "alerts", "in store", "in runs/", "s", "ok"):
        out.add_column(column, justify="right" if column in {"alerts", "s"} else "left")
    for row in rows:
        expected = f"{row.fault.expected_status} {row.fault.expected_type or ''}".strip()
        out.add_row(
            row.fault.name,
            row.status,
            row.error_type or "-",
            expected,
            str(row.alerts),
            _yes(row.in_store),
            _yes(row.in_runs),
            f"{row.seconds:.1f}",
            "[green]yes[/]" if row.correct else "[red]NO[/]",
        )
    return out


def _yes(value: bool) -> str:
    return "yes" if value else "[red]no[/]"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="run only the faults whose name contains this text")
    args = parser.parse_args(argv)
    console = wide_console()
    chosen = [f for f in FAULTS if not args.only or args.only in f.name]
    rows: list[Row] = []
    with LocalCloud() as cloud, tempfile.TemporaryDirectory() as runs:
        for fault in chosen:
            with console.status(f"injecting: {fault.name}"):
                rows.append(run_fault(cloud, fault, Path(runs)))
    console.print(table(rows))
    correct = sum(r.correct for r in rows)
    console.print(f"{correct} of {len(rows)} rows final and correct")
    return 0 if correct == len(rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
