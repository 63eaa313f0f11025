"""The worker's progress writes: on a thread of their own, newest first, and the last one lands before the job ends."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from codeclab.experiments.ids import new_experiment_id
from codeclab.experiments.progress import RecordProgress
from codeclab.experiments.services import Services
from codeclab.experiments.store import ExperimentKey, ExperimentStore
from tests.aws.conftest import spec


def _held_writes(monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, threading.Event, list[str]]:
    """Every progress write waits for `release` before it goes to the (moto) table; `entered` is set once one waits;
    the stages written, in order."""
    entered, release, written = threading.Event(), threading.Event(), []
    write = ExperimentStore.set_progress

    def held(self: ExperimentStore, key: ExperimentKey, stage: str, *frames: Any) -> None:
        entered.set()
        assert release.wait(60), "the test never released the write"
        written.append(stage)
        write(self, key, stage, *frames)

    monkeypatch.setattr(ExperimentStore, "set_progress", held)
    return entered, release, written


def _report_all(record: RecordProgress, stages: tuple[str, ...]) -> threading.Thread:
    reporter = threading.Thread(target=lambda: [record.report(stage, 10, 10) for stage in stages])
    reporter.start()
    reporter.join(30)
    return reporter


def test_reports_return_while_a_write_is_held_and_close_lands_the_newest(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    key, _ = services.store.create(new_experiment_id(), spec())
    entered, release, written = _held_writes(monkeypatch)
    record = RecordProgress(services.store, key)
    # Were the writes the reporter's own, it would still be waiting on the first one: nothing releases it yet.
    assert not _report_all(record, ("load",)).is_alive(), "a report waited for the table"
    assert entered.wait(30)  # the writer holds "load" now
    assert not _report_all(record, ("encode", "decode")).is_alive()
    release.set()
    record.close()
    assert written == ["load", "decode"]  # encode, not yet written when decode came, was replaced by it
    item = services.store.find(key.experiment_id)
    assert item is not None and item["status"] == "RUNNING"
    assert item["progress"]["stage"] == "decode" and item["progress"]["frames_done"] == 10


def test_close_gives_up_on_a_table_that_does_not_answer(services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    key, _ = services.store.create(new_experiment_id(), spec())
    _, release, written = _held_writes(monkeypatch)
    record = RecordProgress(services.store, key)
    assert not _report_all(record, ("load",)).is_alive()
    record.close(timeout=0.2)  # returns: the job ends and publishes its result whatever the table does
    assert written == []
    release.set()  # let the held write finish inside the mock
    record.close()
    assert written == ["load"]
