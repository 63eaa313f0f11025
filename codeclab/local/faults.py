"""The fault plan: every fault a local run can be given, parsed and checked in one place, and what it has spent.

Each switch is one environment variable, and only `FaultPlan.from_environment` reads them:
  CODECLAB_FAULT=KIND:STAGE[@FRAME][:SECONDS]         the worker misbehaves (codeclab/worker/faults.py fires it)
  CODECLAB_LAMBDA_FAULT=MODULE[:N]                    that handler raises: at every invocation, or the first N
  CODECLAB_BATCH_FAULT=no-capacity|host-lost:N[:S]    Batch misbehaves (jobs.py)
  CODECLAB_LOCAL_RUNNABLE_SECONDS=SECONDS             the job queue's RUNNABLE limits, shortened
AWS API errors, answered at the boto3 layer (aws_faults.py), have no variable: the fault matrix puts them in
its plans. Every injection point asks a FaultState for the plan in force, never the environment.
"""

from __future__ import annotations

import os
import re
import threading
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

from codeclab.worker.faults import FAULT_ENV as WORKER_FAULT_ENV
from codeclab.worker.faults import SYNTAX as WORKER_FAULT_SYNTAX
from codeclab.worker.faults import Fault as WorkerFault
from codeclab.worker.faults import parse_fault

LAMBDA_FAULT_ENV = "CODECLAB_LAMBDA_FAULT"
BATCH_FAULT_ENV = "CODECLAB_BATCH_FAULT"
RUNNABLE_SECONDS_ENV = "CODECLAB_LOCAL_RUNNABLE_SECONDS"
# What each variable accepts, as the error for a value it cannot take says it.
SYNTAX = {
    WORKER_FAULT_ENV: WORKER_FAULT_SYNTAX,
    LAMBDA_FAULT_ENV: "MODULE[:N] (a handler module in lambdas/, and how many first invocations fail; "
    "e.g. record_result or reconcile:1)",
    BATCH_FAULT_ENV: "no-capacity or host-lost:N[:SECONDS] (e.g. host-lost:1:1.5)",
    RUNNABLE_SECONDS_ENV: "SECONDS, a number above 0 (e.g. 2)",
}
VARIABLES = tuple(SYNTAX)
_SECONDS = r"(\d+\.?\d*|\.\d+)"
_LAMBDA_PATTERN = re.compile(r"^([A-Za-z_]\w*)(?::([1-9]\d*))?$")
_BATCH_PATTERN = re.compile(rf"^(?:(no-capacity)|host-lost:(\d+)(?::{_SECONDS})?)$")
_SECONDS_PATTERN = re.compile(rf"^{_SECONDS}$")


class FaultPlanError(ValueError):
    """A switch holds a value it cannot take; the message names the variable and what it accepts."""


@dataclass(frozen=True)
class LambdaFault:
    module: str  # the handler's module in lambdas/: "record_result"
    times: int | None = None  # only its first N invocations fail (None: every one)


@dataclass(frozen=True)
class BatchFault:
    no_capacity: bool = False
    hosts_lost: int = 0
    lost_after_seconds: float = 2.0

    def loses_host(self, attempt_number: int) -> float | None:
        """Seconds into this attempt at which its host goes away, if it does."""
        return self.lost_after_seconds if attempt_number <= self.hosts_lost else None


@dataclass(frozen=True)
class AwsFault:
    service: str  # as botocore names it in events: "dynamodb", "sns"
    operation: str  # "UpdateItem", "Publish"
    error_code: str  # what the service would answer: "ProvisionedThroughputExceededException", "InternalError"
    times: int = 1
    after_landing: bool = False
    http_status: int = 400

    def describe(self) -> str:
        when = "after the write lands" if self.after_landing else "before sending"
        return f"{self.service}.{self.operation} -> {self.error_code} x{self.times} ({when})"


@dataclass(frozen=True)
class FaultPlan:
    """What goes wrong in local runs; the empty plan is a normal run."""

    worker: WorkerFault | None = None
    lambda_fault: LambdaFault | None = None
    batch: BatchFault = field(default_factory=BatchFault)
    runnable_seconds: float | None = None  # None: the queue's own limits (30 minutes on the stack)
    aws: tuple[AwsFault, ...] = ()

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> FaultPlan:
        """The plan the switches describe; a value a switch cannot take raises FaultPlanError."""
        values = {name: environ.get(name, "").strip() for name in VARIABLES}
        return cls(
            worker=_worker_fault(values[WORKER_FAULT_ENV]),
            lambda_fault=_lambda_fault(values[LAMBDA_FAULT_ENV]),
            batch=_batch_fault(values[BATCH_FAULT_ENV]),
            runnable_seconds=_runnable_seconds(values[RUNNABLE_SECONDS_ENV]),
        )

    def worker_environment(self) -> dict[str, str]:
        """What the worker, a process of its own, reads its fault from."""
        return {WORKER_FAULT_ENV: str(self.worker)} if self.worker is not None else {}


def _refused(name: str, value: str) -> FaultPlanError:
    return FaultPlanError(f"{name}={value!r} is not {SYNTAX[name]}")


def _worker_fault(value: str) -> WorkerFault | None:
    try:
        return parse_fault(value) if value else None
    except ValueError as exc:  # its message already names the variable and the syntax
        raise FaultPlanError(str(exc)) from None


def _lambda_fault(value: str) -> LambdaFault | None:
    if not value:
        return None
    match = _LAMBDA_PATTERN.match(value)
    if not match:
        raise _refused(LAMBDA_FAULT_ENV, value)
    module, times = match.groups()
    return LambdaFault(module, int(times) if times else None)


def _batch_fault(value: str) -> BatchFault:
    if not value:
        return BatchFault()
    match = _BATCH_PATTERN.match(value)
    if not match:
        raise _refused(BATCH_FAULT_ENV, value)
    no_capacity, hosts, seconds = match.groups()
    return BatchFault(no_capacity=bool(no_capacity), hosts_lost=int(hosts or 0), lost_after_seconds=float(seconds or 2))


def _runnable_seconds(value: str) -> float | None:
    if not value:
        return None
    if not _SECONDS_PATTERN.match(value) or float(value) <= 0:
        raise _refused(RUNNABLE_SECONDS_ENV, value)
    return float(value)


class FaultState:
    """The plan in force in one local cloud, and what its counted faults have spent."""

    def __init__(self) -> None:
        self._injected: FaultPlan | None = None
        self._lock = threading.Lock()
        self._lambda_fired: Counter[LambdaFault] = Counter()
        self._aws_left: dict[AwsFault, int] = {}  # each AWS fault of the plan, with the calls it has yet to fail
        self.aws_fired: list[str] = []  # "service.Operation error" per injected AWS failure, in order

    def plan(self) -> FaultPlan:
        """The plan injected in code, else the environment's, read now: a shell or a test may switch faults
        between runs, as it could when each injection point read its own variable."""
        return self._injected if self._injected is not None else FaultPlan.from_environment()

    @contextmanager
    def injecting(self, plan: FaultPlan) -> Iterator[None]:
        """`plan` in force for the block, counted from zero; then the environment's again, with nothing left armed
        (a later run must not inherit an unspent fault)."""
        with self._lock:
            self._injected = plan
            self._lambda_fired.clear()
            self._aws_left = {}
            for fault in plan.aws:
                self._aws_left[fault] = self._aws_left.get(fault, 0) + fault.times
        try:
            yield
        finally:
            with self._lock:
                self._injected = None
                self._lambda_fired.clear()
                self._aws_left = {}

    def lambda_fails(self, module: str) -> bool:
        """Whether this invocation of the handler in `module` is one the plan fails (and count it if so)."""
        fault = self.plan().lambda_fault
        if fault is None or fault.module != module:
            return False
        with self._lock:
            self._lambda_fired[fault] += 1
            return fault.times is None or self._lambda_fired[fault] <= fault.times

    def take_aws(self, service: str, operation: str) -> AwsFault | None:
        """The AWS fault this call answers with, if one is left for it (and spend it)."""
        with self._lock:
            fault = next((f for f in self._aws_left if (f.service, f.operation) == (service, operation)), None)
            if fault is not None:
                self._aws_left[fault] -= 1
                if self._aws_left[fault] <= 0:
                    del self._aws_left[fault]
                self.aws_fired.append(f"{service}.{operation} {fault.error_code}")
        return fault
