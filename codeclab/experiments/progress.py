"""The worker's live progress, written to its experiment's item through the store.

The Batch job (and the local job runner) pass the item's key and the table in the
environment; without them the worker runs unattached and only logs.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from codeclab.experiments.statuses import Status, TransitionError

if TYPE_CHECKING:
    from codeclab.experiments.store import ExperimentKey, ExperimentStore

PROGRESS_TABLE_ENV = "CODECLAB_TABLE"
EXPERIMENT_ID_ENV = "CODECLAB_EXPERIMENT_ID"
TIMESTAMP_ENV = "CODECLAB_TIMESTAMP"
MIN_INTERVAL_SECONDS = 1.0  # one write a second at most, plus every stage's end
CLOSE_WAIT_SECONDS = 10.0  # how long a finished job waits for its last progress write to land

log = logging.getLogger("codeclab.experiments")


class RecordProgress:
    """Marks the experiment RUNNING at the first report, then records stage and frames.

    The writes go out on a thread of their own, the newest first (a report replaces one not yet written), so the job
    never waits on the table: the six writes of a one-frame local job were a quarter of its time. `close()` lets the
    last one land before the job ends, so no progress write follows the job's result.
    """

    def __init__(self, store: ExperimentStore, key: ExperimentKey) -> None:
        self._store, self._key = store, key
        self._started = False  # marked RUNNING (the writer's)
        self._reported = False  # a report has been taken (the reporter's)
        self._last = 0.0
        self._pending: tuple[str, int, int] | None = None
        self._closed = False
        self._wake = threading.Condition()
        self._writer = threading.Thread(target=self._write_forever, name="progress-writer", daemon=True)
        self._writer.start()

    @classmethod
    def from_environment(cls, env: Mapping[str, str] = os.environ) -> RecordProgress | None:
        if not all(env.get(name) for name in (PROGRESS_TABLE_ENV, EXPERIMENT_ID_ENV, TIMESTAMP_ENV)):
            return None
        # Imported here: the store brings boto3 (about 0.2 s), which an unattached worker never uses.
        from codeclab.experiments.store import ExperimentKey, ExperimentStore

        key = ExperimentKey(env[EXPERIMENT_ID_ENV], int(env[TIMESTAMP_ENV]))
        return cls(ExperimentStore(env[PROGRESS_TABLE_ENV]), key)

    def report(self, stage: str, frames_done: int, frames_total: int) -> None:
        now = time.monotonic()
        finished = frames_total > 0 and frames_done >= frames_total
        if self._reported and not finished and now - self._last < MIN_INTERVAL_SECONDS:
            return
        self._reported, self._last = True, now
        with self._wake:
            self._pending = (stage, frames_done, frames_total)
            self._wake.notify()

    def close(self, timeout: float = CLOSE_WAIT_SECONDS) -> None:
        """Write what is pending, waiting at most `timeout` (an unreachable table must not hold the job)."""
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._writer.join(timeout)

    def _write_forever(self) -> None:
        while True:
            with self._wake:
                while self._pending is None and not self._closed:
                    self._wake.wait()
                pending, self._pending = self._pending, None
            if pending is None:  # closed, and everything written
                return
            self._write(*pending)

    def _write(self, stage: str, frames_done: int, frames_total: int) -> None:
        try:
            self._mark_running()
            self._store.set_progress(self._key, stage, frames_done, frames_total)
        except Exception as exc:  # the record is a view; the job must not die for it, nor its writer thread
            log.warning("could not record progress for %s: %s", self._key, exc)

    def _mark_running(self) -> None:
        if self._started:
            return
        self._started = True
        try:
            self._store.transition(self._key, Status.RUNNING)
        except TransitionError as exc:  # already RUNNING from an earlier attempt, or final
            log.info("not marked RUNNING: %s", exc)
