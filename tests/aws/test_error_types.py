"""Error and cause strings from Step Functions, Batch and Lambda map to the right error type."""

from __future__ import annotations

import json
import re
from pathlib import Path

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


def test_every_worker_error_is_a_row_of_the_one_table_and_batch_exits_classify_by_it() -> None:
    """The worker's exceptions take their codes from WORKER_FAILURES; a Batch job's exit code maps back through it."""
    from codeclab.experiments.error_types import WORKER_FAILURES, classify
    from codeclab.worker import errors

    def subclasses(cls: type[errors.WorkerError]) -> list[type[errors.WorkerError]]:
        return [cls, *(s for sub in cls.__subclasses__() for s in subclasses(sub))]

    kinds = subclasses(errors.WorkerError)
    assert {k.error_type for k in kinds} == set(WORKER_FAILURES)  # no row without an exception, and none without a row
    for kind in kinds:
        row = WORKER_FAILURES[kind.error_type]
        assert kind.exit_code == kind("x").exit_code == row.exit_code
        cause = json.dumps({"JobId": "j", "StatusReason": "Essential container in task exited",
                            "Container": {"ExitCode": row.exit_code}})  # fmt: skip
        assert classify("States.TaskFailed", cause).error_type is row.recorded_as


def test_the_worker_docs_list_the_table_of_exit_codes() -> None:
    """docs/worker.md's exit-code table says what WORKER_FAILURES says, code by code."""
    from codeclab.experiments.error_types import WORKER_FAILURES

    text = (Path(__file__).resolve().parents[2] / "docs" / "worker.md").read_text()
    documented: dict[str, int] = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 3 and cells[0].isdigit():
            documented |= {name: int(cells[0]) for name in re.findall(r"`([A-Z_]+)`", cells[2])}
    wanted = {t.value: f.exit_code for t, f in WORKER_FAILURES.items()}
    assert documented == wanted
