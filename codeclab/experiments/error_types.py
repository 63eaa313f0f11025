"""Map Step Functions, Batch, Lambda and worker failures to the error types people act on.

The one place that reads error and cause strings; everything else uses ErrorType.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from codeclab.experiments.statuses import Status


class ErrorType(StrEnum):
    TIMEOUT = "TIMEOUT"
    STALLED = "STALLED"
    CAPACITY = "CAPACITY"
    CODEC_ERROR = "CODEC_ERROR"
    SANDBOX_VIOLATION = "SANDBOX_VIOLATION"
    SANDBOX_UNAVAILABLE = "SANDBOX_UNAVAILABLE"  # a layer untrusted code needs is missing on the host
    INVALID_INPUT = "INVALID_INPUT"
    ABORTED = "ABORTED"
    STORAGE = "STORAGE"  # a write was refused: a full disk, a quota or a file-size limit
    ORCHESTRATOR_LOST = "ORCHESTRATOR_LOST"  # the local `codeclab run` or `serve` died while it ran
    POINTS_FAILED = "POINTS_FAILED"  # a sweep whose points did not all succeed
    INTERNAL = "INTERNAL"

    @property
    def final_status(self) -> Status:
        aborted = {ErrorType.ABORTED: Status.ABORTED, ErrorType.ORCHESTRATOR_LOST: Status.ABORTED}
        return {ErrorType.TIMEOUT: Status.TIMED_OUT, **aborted}.get(self, Status.FAILED)


class WorkerErrorType(StrEnum):
    """What the worker's result.json names as `error.type`: the record's types, and two finer kinds of bad input."""

    INVALID_INPUT = "INVALID_INPUT"
    INVALID_SPEC = "INVALID_SPEC"
    INVALID_SOURCE = "INVALID_SOURCE"
    STALLED = "STALLED"
    CODEC_ERROR = "CODEC_ERROR"
    INTERNAL = "INTERNAL"
    SANDBOX_VIOLATION = "SANDBOX_VIOLATION"
    SANDBOX_UNAVAILABLE = "SANDBOX_UNAVAILABLE"
    STORAGE = "STORAGE"


@dataclass(frozen=True)
class WorkerFailure:
    """One row of the worker's documented failures: the exit code it ends with and the type the record gets."""

    exit_code: int
    recorded_as: ErrorType


# The one table of the worker's failures (docs/worker.md lists it); the worker's exceptions and the
# workflow's classification both read it.
WORKER_FAILURES: dict[WorkerErrorType, WorkerFailure] = {
    WorkerErrorType.INVALID_INPUT: WorkerFailure(2, ErrorType.INVALID_INPUT),
    WorkerErrorType.INVALID_SPEC: WorkerFailure(2, ErrorType.INVALID_INPUT),
    WorkerErrorType.INVALID_SOURCE: WorkerFailure(2, ErrorType.INVALID_INPUT),
    WorkerErrorType.STALLED: WorkerFailure(3, ErrorType.STALLED),
    WorkerErrorType.CODEC_ERROR: WorkerFailure(4, ErrorType.CODEC_ERROR),
    WorkerErrorType.INTERNAL: WorkerFailure(5, ErrorType.INTERNAL),
    WorkerErrorType.SANDBOX_VIOLATION: WorkerFailure(6, ErrorType.SANDBOX_VIOLATION),
    WorkerErrorType.SANDBOX_UNAVAILABLE: WorkerFailure(7, ErrorType.SANDBOX_UNAVAILABLE),
    WorkerErrorType.STORAGE: WorkerFailure(8, ErrorType.STORAGE),
}


def recorded_type_of_exit(exit_code: int | None) -> ErrorType | None:
    """The record's error type for a worker exit code, or None for a code the worker does not document."""
    return next((f.recorded_as for f in WORKER_FAILURES.values() if f.exit_code == exit_code), None)


def recorded_type_of_worker_error(worker_type: str) -> ErrorType:
    """The record's error type for a result.json `error.type`; anything unknown is INTERNAL, never trusted further."""
    try:
        return WORKER_FAILURES[WorkerErrorType(worker_type)].recorded_as
    except ValueError:
        return ErrorType.INTERNAL


# How Batch's status reason starts when the instance under a job goes away (Spot reclaims included).
HOST_LOST_PREFIX = "Host EC2"
# The workflow's own Fail state, entered only after MarkFailed and an alert state: an execution that
# ended with it has had its alert, so Reconcile must not send another.
ALERTED_FAILURE = "ExperimentFailed"
# Errors raised by our own Lambdas, by exception class name (what Step Functions reports).
LAMBDA_ERRORS = {
    "SpecError": ErrorType.INVALID_INPUT,
    "InvalidEventError": ErrorType.INVALID_INPUT,
    "SweepPointsFailed": ErrorType.POINTS_FAILED,
}


@dataclass(frozen=True)
class Classified:
    error_type: ErrorType
    message: str


def classify(error: str | None, cause: str | None) -> Classified:
    """Classify a Catch's Error and Cause (or an execution's) into a type and a readable message."""
    error, cause = error or "", cause or ""
    if error == "States.Timeout":
        return Classified(ErrorType.TIMEOUT, "the step ran past its time limit (limits.timeout_seconds)")
    if error in LAMBDA_ERRORS:
        return Classified(LAMBDA_ERRORS[error], _lambda_message(cause) or error)
    job = _batch_job(cause)
    if job is not None:
        return _classify_batch_job(job)
    return Classified(ErrorType.INTERNAL, f"{error}: {_lambda_message(cause) or cause[:500]}".strip(": "))


def classify_execution_status(status: str, error: str | None, cause: str | None) -> Classified:
    """An execution that ended without its Catch running (console stop, machine timeout)."""
    if status == "ABORTED":
        return Classified(ErrorType.ABORTED, "the execution was stopped (console, API cancel or StopExecution)")
    if status == "TIMED_OUT":
        return Classified(ErrorType.TIMEOUT, "the whole workflow ran past its time limit")
    return classify(error, cause)


def _classify_batch_job(job: dict[str, Any]) -> Classified:
    reason = str(job.get("StatusReason") or job.get("statusReason") or "")
    # the queue's jobStateTimeLimitActions cancel with "...due to reason: CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY"
    if "CAPACITY:" in reason:
        return Classified(ErrorType.CAPACITY, f"no GPU capacity came while the job waited: {reason}")
    if "MISCONFIGURATION:" in reason:
        return Classified(
            ErrorType.INTERNAL, f"the job can never be placed; fix the compute environment or job definition: {reason}"
        )
    if reason.startswith(HOST_LOST_PREFIX):  # Batch already retried it, as the job definition's strategy says
        attempts = len(job.get("Attempts") or job.get("attempts") or []) or 1
        return Classified(
            ErrorType.INTERNAL,
            f"the GPU instance under the job went away on each of its {attempts} attempt(s) (a Spot reclaim or a "
            f"host failure); resubmit it, or turn Spot off if this recurs: {reason}",
        )
    if "timeout" in reason.lower() and "attempt" in reason.lower():
        return Classified(ErrorType.TIMEOUT, f"the Batch job ran past its attempt duration: {reason}")
    exit_code = _exit_code(job)
    kind = recorded_type_of_exit(exit_code)
    if kind is not None:
        return Classified(kind, f"the worker exited with code {exit_code} ({kind}); see its result.json and worker.log")
    if exit_code == 137 or "OutOfMemory" in reason:
        return Classified(
            ErrorType.INTERNAL, f"the worker was killed (exit {exit_code}), often out of memory: {reason}"
        )
    return Classified(ErrorType.INTERNAL, f"the Batch job failed: {reason or 'no reason given'} (exit {exit_code})")


def _batch_job(cause: str) -> dict[str, Any] | None:
    try:
        parsed = json.loads(cause)
    except (json.JSONDecodeError, TypeError):
        return None
    if isinstance(parsed, dict) and ("JobId" in parsed or "jobId" in parsed):
        return parsed
    return None


def _exit_code(job: dict[str, Any]) -> int | None:
    container = job.get("Container") or job.get("container") or {}
    code = container.get("ExitCode", container.get("exitCode"))
    if code is None:
        attempts = job.get("Attempts") or job.get("attempts") or [{}]
        last = attempts[-1].get("Container") or attempts[-1].get("container") or {}
        code = last.get("ExitCode", last.get("exitCode"))
    return int(code) if code is not None else None


def _lambda_message(cause: str) -> str:
    try:
        parsed = json.loads(cause)
    except (json.JSONDecodeError, TypeError):
        return ""
    return str(parsed.get("errorMessage", "")) if isinstance(parsed, dict) else ""
