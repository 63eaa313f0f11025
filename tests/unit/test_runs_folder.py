"""runs/ and its one owner: whole files, processes named so a reused pid cannot pass, recovery and parking."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from codeclab.experiments.ids import new_experiment_id
from codeclab.local.runs import ProcessId, RunsFolder


def record(status: str = "RUNNING") -> dict[str, object]:
    return {"experiment_id": new_experiment_id(), "timestamp": 1, "status": status,
            "history": [{"status": "QUEUED", "at": 1}]}  # fmt: skip


def dead_process() -> ProcessId:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    alive = ProcessId(child.pid, int(Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[19]))
    child.wait()
    return alive


def test_a_process_is_its_pid_and_start_time(tmp_path: Path) -> None:
    me = ProcessId.current()
    assert me.alive() and me.pid == os.getpid()
    assert not ProcessId(me.pid, me.started + 1).alive()  # the same pid, started at another time: not us
    assert not dead_process().alive()


def test_an_unfinished_record_of_a_dead_process_is_finalised_and_its_registration_removed(tmp_path: Path) -> None:
    runs, gone = RunsFolder(tmp_path), dead_process()
    lost, ours, done = record(), record(), record("SUCCEEDED")
    runs.save_record(lost, gone)
    runs.save_record(ours, ProcessId.current())
    runs.save_record(done)
    registration = tmp_path / ".codeclab" / "processes" / f"{gone.pid}.json"
    registration.parent.mkdir(parents=True, exist_ok=True)
    process = {"pid": gone.pid, "started": gone.started}
    registration.write_text(
        json.dumps({"url": "http://127.0.0.1:9", "kind": "run", "started_at": 0, "process": process, "scratch": ""})
    )
    assert runs.recover() == [lost["experiment_id"]]
    finalised = runs.record(str(lost["experiment_id"]))
    assert finalised is not None and finalised["status"] == "ABORTED"
    assert finalised["error"]["type"] == "ORCHESTRATOR_LOST" and f"pid {gone.pid}" in finalised["error"]["message"]
    assert [h["status"] for h in finalised["history"]] == ["QUEUED", "ABORTED"]
    assert not (tmp_path / str(lost["experiment_id"]) / "owner.json").exists() and not registration.exists()
    assert runs.record(str(ours["experiment_id"]))["status"] == "RUNNING"  # its process lives: left alone
    assert runs.recover() == []


def test_a_record_runs_cannot_take_is_parked_and_adopted_by_the_next_recovery(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    runs, other = RunsFolder(tmp_path / "runs"), RunsFolder(tmp_path / "elsewhere")
    kept = record("SUCCEEDED")
    parked = runs.park(kept)
    assert parked.parent == tmp_path / "state" / "codeclab" / "unsaved"
    other.recover()
    assert parked.exists()  # parked for another runs folder: not this one's to adopt
    runs.recover()
    assert runs.record(str(kept["experiment_id"])) == kept and not parked.exists()


def test_names_that_lead_out_of_runs_are_refused(tmp_path: Path) -> None:
    runs = RunsFolder(tmp_path)
    for name in ("..", "../etc", "a/b", ""):
        assert runs.record(name) is None
        with pytest.raises(ValueError, match="not an experiment id"):
            runs.folder(name)


def test_files_are_whole_or_absent(tmp_path: Path) -> None:
    runs, item = RunsFolder(tmp_path), record()
    runs.save_record(item, ProcessId.current())
    folder = tmp_path / str(item["experiment_id"])
    assert sorted(p.name for p in folder.iterdir()) == ["owner.json", "record.json"]  # no partial sibling left
