"""Experiment statuses and the transitions allowed between them: the only definition."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    TIMED_OUT = "TIMED_OUT"
    ABORTED = "ABORTED"

    @property
    def is_final(self) -> bool:
        return self in FINAL


FINAL: frozenset[Status] = frozenset({Status.SUCCEEDED, Status.FAILED, Status.TIMED_OUT, Status.ABORTED})

# A job so short that its RUNNING write never landed may still finish, so QUEUED may end directly.
TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.QUEUED: frozenset({Status.RUNNING, *FINAL}),
    Status.RUNNING: FINAL,
    **{final: frozenset() for final in FINAL},
}


def sources_of(target: Status) -> list[Status]:
    """Statuses from which `target` may be reached (never a final one)."""
    return [source for source, targets in TRANSITIONS.items() if target in targets]


class TransitionError(ValueError):
    """A status change the state model does not allow."""

    def __init__(self, experiment_id: str, current: Status, target: Status) -> None:
        self.current, self.target = current, target
        reason = "a final status is permanent" if current.is_final else "not an allowed transition"
        super().__init__(f"{experiment_id}: cannot go from {current} to {target}: {reason}")
