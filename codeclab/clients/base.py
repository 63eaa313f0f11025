"""What the `codeclab` command may ask of a backend, and the typed answers it gets.

A backend is local mode (`local.py`: runs/ and the API handler of a local process) or a deployed
stack (`stack.py`: boto3). Every answer, and every refusal, names the backend that gave it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any, Protocol

from codeclab.experiments.record import ExperimentRecord, PointSummary, RecordError, RecordProgress
from codeclab.experiments.spec import Spec
from codeclab.experiments.statuses import Status
from codeclab.experiments.sweep_progress import SweepProgress

if TYPE_CHECKING:  # the API's module imports boto3, which a local command need not pay for
    from codeclab.experiments.api import CancelRequested, Submitted

ProgressCallback = Callable[[ExperimentRecord], None]
POLL_SECONDS = 1.0


def spec_body(spec: Spec) -> str:
    """The spec as the API takes it: the body of POST /experiments (checked, its defaults filled in)."""
    return spec.to_json()


class Reason(Enum):
    NOT_FOUND = "not found"  # no experiment has that id
    ENDED = "already ended"  # a cancel that came after the end
    INVALID = "invalid"  # a spec or an argument the backend refuses
    UNAVAILABLE = "unavailable"  # nothing to ask: no such stack, no `codeclab serve`, a process that does not answer
    NOT_KEPT = "not kept"  # the experiment ended, but runs/ could not take it

    @classmethod
    def of_status(cls, status: int) -> Reason:
        """What an API status code refuses: the API's 4xx, or a process that cannot take a request now."""
        if status == 404:
            return cls.NOT_FOUND
        if status == 409:
            return cls.ENDED
        return cls.INVALID if 400 <= status < 500 else cls.UNAVAILABLE


class Refused(Exception):
    """The backend did not do what was asked: `reason` says why, `answered_by` which backend said so."""

    def __init__(self, reason: Reason, message: str, answered_by: str) -> None:
        super().__init__(message)
        self.reason, self.message, self.answered_by = reason, message, answered_by


@dataclass(frozen=True)
class Submission:
    """An experiment the backend accepted: the API's 202 answer."""

    experiment_id: str
    execution_arn: str
    status_url: str
    answered_by: str

    @classmethod
    def of(cls, body: Mapping[str, Any], answered_by: str) -> Submission:
        return cls(body["experiment_id"], body["execution_arn"], body["status_url"], answered_by)

    def as_json(self) -> Submitted:
        return {"experiment_id": self.experiment_id, "execution_arn": self.execution_arn,
                "status_url": self.status_url}  # fmt: skip


@dataclass(frozen=True)
class Cancellation:
    """A cancel the backend accepted: the API's 202 answer (Reconcile then marks the experiment ABORTED)."""

    experiment_id: str
    status: Status
    cancel_requested: bool
    answered_by: str

    @classmethod
    def of(cls, body: Mapping[str, Any], answered_by: str) -> Cancellation:
        return cls(body["experiment_id"], Status(body["status"]), bool(body["cancel_requested"]), answered_by)

    def as_json(self) -> CancelRequested:
        return {"experiment_id": self.experiment_id, "status": self.status.value,
                "cancel_requested": self.cancel_requested}  # fmt: skip


@dataclass(frozen=True)
class RecordSummary:
    """One experiment's record as the command shows it; a sweep's points come with it, each as it now stands."""

    item: ExperimentRecord
    points: tuple[ExperimentRecord | PointSummary, ...]  # a point's own record; the manifest's entry until it has one
    answered_by: str
    sweep: SweepProgress | None = None  # a sweep's counts, throughput, ETA and failed points

    @property
    def experiment_id(self) -> str:
        return str(self.item["experiment_id"])

    @property
    def status(self) -> Status:
        return Status(self.item["status"])

    @property
    def error(self) -> RecordError | None:
        return self.item.get("error")

    @property
    def progress(self) -> RecordProgress | None:
        return self.item.get("progress")


@dataclass(frozen=True)
class Listing:
    """Experiments, newest first."""

    records: tuple[ExperimentRecord, ...]
    answered_by: str


class ExperimentsClient(Protocol):
    """The one way the `codeclab` command reaches experiments, whichever backend holds them."""

    @property
    def recovered(self) -> tuple[str, ...]:
        """Experiments found without the local process that ran them, made final as this client opened."""

    def submit(self, spec: Spec, idempotency_key: str | None = None) -> Submission:
        """Start one experiment (or sweep); the same idempotency key never starts a second."""

    def get(self, experiment_id: str) -> RecordSummary:
        """The record as it stands; Refused NOT_FOUND if there is none."""

    def cancel(self, experiment_id: str) -> Cancellation:
        """Stop a running experiment; Refused NOT_FOUND or ENDED when there is nothing to stop."""

    def wait(self, submission: Submission, on_progress: ProgressCallback | None = None) -> RecordSummary:
        """Follow the experiment until its record is final; returns that record."""

    def list(self, status: Status | None = None) -> Listing:
        """Experiments, newest first, all or in one status."""


def follow(
    read: Callable[[], ExperimentRecord | None],
    on_progress: ProgressCallback | None,
    every_seconds: float = POLL_SECONDS,
) -> ExperimentRecord:
    """Read the record until it is final, showing each reading; None is a record not written yet
    (`read` raises Refused when it never will be)."""
    while True:
        record = read()
        if record is not None:
            if on_progress:
                on_progress(record)
            if Status(record["status"]).is_final:
                return record
        time.sleep(every_seconds)
