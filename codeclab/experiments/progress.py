"""The worker's live progress, written to its experiment's item through the store.

The Batch job (and the local job runner) pass the item's key and the table in the
environment; without them the worker runs unattached and only logs.
"""

from __future__ import annotations

import logging
import os
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

log = logging.getLogger("codeclab.experiments")


class RecordProgress:
    """Marks the experiment RUNNING at the first report, then records stage and frames."""

    def __init__(self, store: ExperimentStore, key: ExperimentKey) -> None:
        self._store, self._key = store, key
        self._started = False
        self._last = 0.0

    @classmethod
    def from_environment(cls, env: Mapping[str, str] = os.environ) -> RecordProgress | None:
        if not all(env.get(name) for name in (PROGRESS_TABLE_ENV, EXPERIMENT_ID_ENV, TIMESTAMP_ENV)):
            return None
        # Imported here: the store brings boto3 (about 0.2 s), which an unattached worker never uses.
        from codeclab.experiments.store import ExperimentKey, ExperimentStore

        key = ExperimentKey(env[EXPERIMENT_ID_ENV], int(env[TIMESTAMP_ENV]))
        return cls(ExperimentStore(env[PROGRESS_TABLE_ENV]), key)

    def report(self, stage: str, frames_done: int, frames_total: int) -> None:
        from botocore.exceptions import BotoCoreError, ClientError  # loaded with the store, not at start-up

        now = time.monotonic()
        finished = frames_total > 0 and frames_done >= frames_total
        if self._started and not finished and now - self._last < MIN_INTERVAL_SECONDS:
            return
        self._last = now
        try:
            self._mark_running()
            self._store.set_progress(self._key, stage, frames_done, frames_total)
        except (BotoCoreError, ClientError) as exc:  # the record is a view; the job must not die for it
            log.warning("could not record progress for %s: %s", self._key, exc)

    def _mark_running(self) -> None:
        if self._started:
            return
        self._started = True
        try:
            self._store.transition(self._key, Status.RUNNING)
        except TransitionError as exc:  # already RUNNING from an earlier attempt, or final
            log.info("not marked RUNNING: %s", exc)
