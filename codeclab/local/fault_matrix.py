"""The fault matrix (`make faults`): inject each fault into a real local workflow run and report what became of it.

One row per fault: the final status and error type, the Batch attempts, the AWS errors injected, the alerts
sent, whether the record is in the store and in runs/, and the time from submission to a final record. A row
is correct when status and type are the expected ones, exactly one alert went out for a failure (none for a
success), the record exists in both places, and the fault really fired (its AWS errors were all injected, its
job took the expected attempts). tests/local/test_fault_matrix.py runs every row; `make faults` prints them
and exits 1 if any row is not correct.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.table import Table

from codeclab.experiments.api import Submitted
from codeclab.experiments.record import ExperimentRecord
from codeclab.local import runner
from codeclab.local.emulator import LocalCloud
from codeclab.local.faults import AwsFault, BatchFault, FaultPlan, LambdaFault
from codeclab.local.runs import RunsFolder
from codeclab.terminal import wide_console
from codeclab.worker.faults import Fault as WorkerFault

# boto3's default (standard) retry mode makes 4 tries per DynamoDB call: one fewer throttle is absorbed by the
# SDK, one more fails the handler, and Step Functions' retry of the Lambda state takes over.
SDK_TRIES = 4


@dataclass(frozen=True)
class Fault:
    name: str
    expected_status: str
    expected_type: str | None
    plan: FaultPlan = field(default_factory=FaultPlan)
    limits: dict[str, int] = field(default_factory=dict)
    frames: int = 4
    abort_after_running: bool = False
    attempts: int | None = None  # Batch attempts the job must take (None: not checked)
    sweep: bool = False  # run a two-point sweep instead of one experiment

    def spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "name": "fault-matrix",
            "source": {"clip": "builtin:carphone", "frames": self.frames},
            "codec": {"name": "jpeg", "params": {"quality": 50}},
            "limits": {"timeout_seconds": 120, "stall_seconds": 30, **self.limits},
            "metrics": {"vmaf": False},
        }
        if self.sweep:
            spec["codec"] = {"name": "jpeg"}
            spec["sweep"] = {"quality": [30, 70]}
        return spec


def _throttled(operation: str, times: int) -> AwsFault:
    return AwsFault("dynamodb", operation, "ProvisionedThroughputExceededException", times=times)


def _landed_then_refused(operation: str) -> AwsFault:
    return AwsFault("dynamodb", operation, "ConditionalCheckFailedException", after_landing=True)


def _lambda_raises(module: str, times: int | None = None, worker: WorkerFault | None = None) -> FaultPlan:
    return FaultPlan(worker=worker, lambda_fault=LambdaFault(module, times))


CODEC_FAILS = WorkerFault("fail", "encode", frame=1)
SLOW = WorkerFault("slow", "encode", seconds=0.5)  # half a second a frame: still encoding when the fault hits
HANG = WorkerFault("hang", "encode", frame=1)
FAULTS = (
    Fault("none (control)", "SUCCEEDED", None, attempts=1),
    Fault("worker crash (exception)", "FAILED", "INTERNAL", FaultPlan(worker=WorkerFault("crash", "encode", 1))),
    Fault("SIGKILL mid-encode (as OOM)", "FAILED", "INTERNAL", FaultPlan(worker=WorkerFault("kill", "encode", 2))),
    Fault("hang (stall watchdog)", "FAILED", "STALLED", FaultPlan(worker=HANG), {"stall_seconds": 2}),
    Fault("slow but steady, under the stall limit", "SUCCEEDED", None, FaultPlan(worker=SLOW), {"stall_seconds": 5}),
    Fault(
        "job past its time limit",
        "TIMED_OUT",
        "TIMEOUT",
        FaultPlan(worker=HANG),
        {"timeout_seconds": 10, "stall_seconds": 60},
    ),
    Fault("CreateRecord raises", "FAILED", "INTERNAL", _lambda_raises("create_record")),
    Fault("RecordResult raises", "FAILED", "INTERNAL", _lambda_raises("record_result")),
    Fault(
        "MarkFailed raises (after a codec error)",
        "FAILED",
        "CODEC_ERROR",
        _lambda_raises("mark_failed", worker=CODEC_FAILS),
    ),
    Fault(
        "AggregateSweep raises (2-point sweep)",
        "FAILED",
        "INTERNAL",
        _lambda_raises("aggregate_sweep"),
        frames=2,
        sweep=True,
    ),
    Fault(
        "Reconcile raises once (after a stop)",
        "ABORTED",
        "ABORTED",
        _lambda_raises("reconcile", times=1, worker=SLOW),
        frames=32,
        abort_after_running=True,
    ),
    Fault(
        "execution aborted (StopExecution)",
        "ABORTED",
        "ABORTED",
        FaultPlan(worker=SLOW),
        frames=32,
        abort_after_running=True,
    ),
    Fault(
        f"DynamoDB throttles each write {SDK_TRIES - 1}x (SDK retries)",
        "SUCCEEDED",
        None,
        FaultPlan(aws=(_throttled("PutItem", SDK_TRIES - 1), _throttled("UpdateItem", SDK_TRIES - 1))),
    ),
    Fault(
        f"DynamoDB throttles a write {SDK_TRIES + 1}x (state retries)",
        "SUCCEEDED",
        None,
        FaultPlan(aws=(_throttled("UpdateItem", SDK_TRIES + 1),)),
    ),
    Fault(
        "DynamoDB conditional check fails on landed writes",
        "SUCCEEDED",
        None,
        FaultPlan(aws=(_landed_then_refused("PutItem"), _landed_then_refused("UpdateItem"))),
    ),
    Fault(
        "SNS publish fails once (alert retried)",
        "FAILED",
        "CODEC_ERROR",
        FaultPlan(worker=CODEC_FAILS, aws=(AwsFault("sns", "Publish", "InternalError", http_status=500),)),
    ),
    Fault(
        "Batch job cancelled in RUNNABLE (no capacity)",
        "FAILED",
        "CAPACITY",
        FaultPlan(batch=BatchFault(no_capacity=True), runnable_seconds=2),
        attempts=0,
    ),
    Fault(
        "host (Spot) lost once, retried, succeeds",
        "SUCCEEDED",
        None,
        FaultPlan(worker=SLOW, batch=BatchFault(hosts_lost=1, lost_after_seconds=1.5)),
        attempts=2,
    ),
    Fault(
        "host lost on every attempt",
        "FAILED",
        "INTERNAL",
        FaultPlan(worker=SLOW, batch=BatchFault(hosts_lost=3, lost_after_seconds=1.5)),
        attempts=3,
    ),
)


@dataclass(frozen=True)
class Row:
    fault: Fault
    status: str
    error_type: str | None
    attempts: int
    injected: int
    alerts: int
    in_store: bool
    in_runs: bool
    seconds: float

    @property
    def correct(self) -> bool:
        alerts_ok = self.alerts == (0 if self.fault.expected_status == "SUCCEEDED" else 1)
        outcome_ok = (self.status, self.error_type) == (self.fault.expected_status, self.fault.expected_type)
        fired = self.injected == sum(f.times for f in self.fault.plan.aws) and self.fault.attempts in (
            None,
            self.attempts,
        )
        return outcome_ok and alerts_ok and fired and self.in_store and self.in_runs


def run_fault(cloud: LocalCloud, fault: Fault, runs_dir: Path) -> Row:
    started, injected_before = time.monotonic(), len(cloud.faults.aws_fired)
    with cloud.faults.injecting(fault.plan):
        submitted = runner.submit(cloud, fault.spec())
        if fault.abort_after_running:
            threading.Thread(target=_abort_when_running, args=(cloud, submitted), daemon=True).start()
        record: ExperimentRecord | None
        try:
            record = runner.wait(cloud, submitted)
        except RuntimeError:  # the execution ended but left no final record: a lost experiment
            record = cloud.services().store.find(submitted["experiment_id"])
    return _row(cloud, fault, submitted, record, runs_dir, time.monotonic() - started, injected_before)


def _row(cloud: LocalCloud, fault: Fault, submitted: Submitted, record: ExperimentRecord | None, runs_dir: Path,
         seconds: float, injected_before: int) -> Row:  # fmt: skip
    experiment_id = submitted["experiment_id"]
    if record is not None:
        runner.collect(cloud, record, runs_dir)
    error = record.get("error") if record else None
    return Row(
        fault=fault,
        status=record["status"] if record else "(none)",
        error_type=error["type"] if error else None,
        attempts=cloud.jobs.attempts.get(experiment_id, 0),
        injected=len(cloud.faults.aws_fired) - injected_before,
        alerts=len(cloud.alerts_for(experiment_id)),
        in_store=record is not None,
        in_runs=RunsFolder(runs_dir).record(experiment_id) is not None,
        seconds=seconds,
    )


def _abort_when_running(cloud: LocalCloud, submitted: Submitted) -> None:
    store, deadline = cloud.services().store, time.monotonic() + 60
    while (record := store.find(submitted["experiment_id"])) is None or record["status"] != "RUNNING":
        if time.monotonic() > deadline:
            return
        time.sleep(0.2)
    cloud.sfn.stop_execution(executionArn=submitted["execution_arn"], cause="fault matrix")


def table(rows: list[Row]) -> Table:
    out = Table(title="codeclab fault matrix (local workflow, carphone jpeg)")
    columns = ("fault", "final status", "error type", "expected", "attempts", "injected", "alerts", "in store",
               "in runs/", "s", "ok")  # fmt: skip
    for column in columns:
        out.add_column(column, justify="right" if column in {"attempts", "injected", "alerts", "s"} else "left")
    for row in rows:
        expected = f"{row.fault.expected_status} {row.fault.expected_type or ''}".strip()
        out.add_row(
            row.fault.name,
            row.status,
            row.error_type or "-",
            expected,
            str(row.attempts),
            str(row.injected) if row.fault.plan.aws else "-",
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
    parser = argparse.ArgumentParser(prog="make faults", description=__doc__.split("\n\n")[0])
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
