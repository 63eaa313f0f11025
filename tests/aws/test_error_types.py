"""Error and cause strings from Step Functions, Batch and Lambda map to the right error type."""

from __future__ import annotations

import json

import pytest

from codeclab.experiments.error_types import ErrorType, classify, classify_execution_status
from codeclab.experiments.statuses import Status


def batch_cause(exit_code: int | None = None, reason: str = "Essential container in task exited") -> str:
    container = {} if exit_code is None else {"ExitCode": exit_code}
    return json.dumps(
        {
            "JobId": "j-1",
            "JobName": "codeclab-x",
            "Status": "FAILED",
            "StatusReason": reason,
            "Container": container,
            "Attempts": [{"Container": container}],
        }
    )


@pytest.mark.parametrize(
    ("error", "cause", "expected"),
    [
        ("States.Timeout", "", ErrorType.TIMEOUT),
        ("States.TaskFailed", batch_cause(2), ErrorType.INVALID_INPUT),
        ("States.TaskFailed", batch_cause(3), ErrorType.STALLED),
        ("States.TaskFailed", batch_cause(4), ErrorType.CODEC_ERROR),
        ("States.TaskFailed", batch_cause(5), ErrorType.INTERNAL),
        ("States.TaskFailed", batch_cause(6), ErrorType.SANDBOX_VIOLATION),
        ("States.TaskFailed", batch_cause(7), ErrorType.SANDBOX_UNAVAILABLE),
        ("States.TaskFailed", batch_cause(8), ErrorType.STORAGE),
        ("States.TaskFailed", batch_cause(137, "OutOfMemoryError: Container killed"), ErrorType.INTERNAL),
        (
            "States.TaskFailed",
            batch_cause(
                None, "Canceled by JobStateTimeLimit action due to reason: CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY"
            ),
            ErrorType.CAPACITY,
        ),
        (
            "States.TaskFailed",
            batch_cause(
                None, "Canceled by JobStateTimeLimit action due to reason: MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT"
            ),
            ErrorType.INTERNAL,
        ),
        ("States.TaskFailed", batch_cause(None, "Job attempt duration exceeded timeout"), ErrorType.TIMEOUT),
        ("States.TaskFailed", batch_cause(None, "Host EC2 (instance i-0abc) terminated."), ErrorType.INTERNAL),
        (
            "SpecError",
            json.dumps({"errorMessage": "invalid spec: $.name: ...", "errorType": "SpecError"}),
            ErrorType.INVALID_INPUT,
        ),
        ("Lambda.Unknown", "", ErrorType.INTERNAL),
        ("States.Runtime", "not json at all", ErrorType.INTERNAL),
    ],
)
def test_classify(error: str, cause: str, expected: ErrorType) -> None:
    assert classify(error, cause).error_type is expected


def test_messages_are_readable() -> None:
    assert classify("States.TaskFailed", batch_cause(3)).message.startswith("the worker exited with code 3 (STALLED)")
    assert (
        classify("SpecError", json.dumps({"errorMessage": "invalid spec: $.name: x"})).message
        == "invalid spec: $.name: x"
    )
    assert classify(None, None).message == ""
    lost = classify("States.TaskFailed", batch_cause(None, "Host EC2 (instance i-0abc) terminated.")).message
    assert lost.startswith("the GPU instance under the job went away on each of its 1 attempt(s)")


def test_execution_statuses() -> None:
    assert classify_execution_status("ABORTED", None, None).error_type is ErrorType.ABORTED
    assert classify_execution_status("TIMED_OUT", "States.Timeout", "").error_type is ErrorType.TIMEOUT
    assert classify_execution_status("FAILED", "States.TaskFailed", batch_cause(4)).error_type is ErrorType.CODEC_ERROR


def test_each_type_has_one_final_status() -> None:
    assert ErrorType.TIMEOUT.final_status is Status.TIMED_OUT
    assert ErrorType.ABORTED.final_status is Status.ABORTED
    assert {t.final_status for t in ErrorType} == {Status.TIMED_OUT, Status.ABORTED, Status.FAILED}


def test_every_worker_error_has_its_exit_code_and_type_in_the_classifier() -> None:
    """The worker's errors and the classifier's tables must agree, or a failure is misfiled as INTERNAL."""
    from codeclab.experiments.error_types import WORKER_ERROR_TYPES, WORKER_EXIT_CODES
    from codeclab.worker import errors

    for error in (errors.InvalidInput, errors.Stalled, errors.CodecFailure, errors.SandboxViolation,
                  errors.SandboxUnavailable, errors.StorageFailure, errors.WorkerError):  # fmt: skip
        assert WORKER_EXIT_CODES[error.exit_code] == WORKER_ERROR_TYPES[error.error_type]
