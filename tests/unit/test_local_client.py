"""LocalClient without a running workflow: runs/ answers reads, and writes that cannot reach a process are refused."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

from codeclab.clients.base import Reason, Refused, Submission
from codeclab.clients.local import LocalClient
from codeclab.experiments.ids import new_experiment_id
from codeclab.experiments.spec import Spec
from codeclab.experiments.statuses import Status
from codeclab.local.runs import ProcessId, RunsFolder


def record(status: str, timestamp: int, **extra: Any) -> dict[str, Any]:
    return {"experiment_id": new_experiment_id(), "timestamp": timestamp, "status": status,
            "spec": {"codec": {"name": "jpeg", "params": {"quality": 60}}}, **extra}  # fmt: skip


def refusal(call, *args) -> Refused:
    with pytest.raises(Refused) as raised:
        call(*args)
    return raised.value


@pytest.fixture
def runs(tmp_path: Path) -> RunsFolder:
    return RunsFolder(tmp_path / "runs")


def silent_serve(runs: RunsFolder, tmp_path: Path) -> str:
    """This process registered as a `serve` on the folder, at a loopback port where nothing listens."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    runs.register(url, "serve", tmp_path / "codeclab-jobs-test")
    return url


def test_get_and_list_read_runs_and_say_so(runs: RunsFolder) -> None:
    sweep = record("RUNNING", 3000, point_count=2, history=[{"status": "RUNNING", "at": 3000}])
    done = record("SUCCEEDED", 2000, parent_id=sweep["experiment_id"], point_index=0, point_label="jpeg quality=60")
    old = record("FAILED", 1000)
    stub = {"experiment_id": new_experiment_id(), "label": "jpeg quality=70", "status": "QUEUED"}  # no record yet
    for each in (done, old, sweep):
        runs.save_record(each, ProcessId.current())  # the running sweep's owner: this live process
    manifest = [{"experiment_id": p["experiment_id"], "index": i, "label": label}
                for i, (p, label) in enumerate(((done, "jpeg quality=60"), (stub, stub["label"])))]  # fmt: skip
    (runs.folder(sweep["experiment_id"]) / "points.json").write_text(json.dumps(manifest))
    client = LocalClient(runs.root)
    answered_by = f"{runs.root}/ (local)"

    got = client.get(sweep["experiment_id"])
    assert got.item == sweep and got.status is Status.RUNNING and got.answered_by == answered_by
    assert got.points == (done, stub)  # each point as runs/ holds it, else as the sweep's manifest names it
    assert got.sweep is not None and got.sweep.total == 2 and got.sweep.counts == {"SUCCEEDED": 1, "QUEUED": 1}
    listed = client.list()
    assert [r["experiment_id"] for r in listed.records] == [r["experiment_id"] for r in (sweep, done, old)]
    assert listed.answered_by == answered_by
    assert client.list(Status.FAILED).records == (old,)


@pytest.mark.parametrize("experiment_id", ["exp_01M8H5K1FQP3YRBSD64WDC7V0A", "../outside", ""])
def test_an_unknown_id_is_not_found_in_runs(runs: RunsFolder, experiment_id: str) -> None:
    client = LocalClient(runs.root)
    for call in (client.get, client.cancel):
        refused = refusal(call, experiment_id)
        assert refused.reason is Reason.NOT_FOUND and f"no experiment {experiment_id} in {runs.root}" in refused.message


def test_opening_finalises_what_a_dead_process_left_running(runs: RunsFolder) -> None:
    lost = record("RUNNING", 1000)
    runs.save_record(lost, ProcessId(pid=1, started=-1))  # no process ever started at tick -1
    client = LocalClient(runs.root)
    assert client.recovered == (lost["experiment_id"],)
    got = client.get(lost["experiment_id"])
    assert got.status is Status.ABORTED and got.error is not None and got.error["type"] == "ORCHESTRATOR_LOST"
    assert LocalClient(runs.root).recovered == ()


def test_cancel_of_an_ended_experiment_is_refused(runs: RunsFolder) -> None:
    done = record("SUCCEEDED", 1000)
    runs.save_record(done)
    refused = refusal(LocalClient(runs.root).cancel, done["experiment_id"])
    assert refused.reason is Reason.ENDED and refused.message == f"{done['experiment_id']} already ended as SUCCEEDED"


def test_submit_without_a_serve_is_refused_before_anything_starts(runs: RunsFolder) -> None:
    refused = refusal(LocalClient(runs.root).submit, Spec({"name": "x"}))
    assert refused.reason is Reason.UNAVAILABLE and f"no `codeclab serve` is running on {runs.root}" in refused.message
    assert refused.answered_by == f"{runs.root}/ (local)"


def test_a_process_that_does_not_answer_is_unavailable(runs: RunsFolder, tmp_path: Path) -> None:
    url = silent_serve(runs, tmp_path)
    running = record("RUNNING", 1000)
    runs.save_record(running, ProcessId.current())
    client = LocalClient(runs.root)
    for call, argument in ((client.submit, Spec({"name": "x"})), (client.cancel, running["experiment_id"])):
        refused = refusal(call, argument)
        assert refused.reason is Reason.UNAVAILABLE and f"the local codeclab process at {url} does not answer" in (
            refused.message
        )
        assert refused.answered_by == f"codeclab serve at {url}"


def test_wait_returns_a_final_record_and_refuses_one_no_process_can_write(runs: RunsFolder) -> None:
    done = record("SUCCEEDED", 1000)
    runs.save_record(done)
    client = LocalClient(runs.root)
    seen: list[str] = []
    waited = client.wait(
        Submission(done["experiment_id"], "arn", "/x", "elsewhere"), lambda r: seen.append(r["status"])
    )
    assert waited.item == done and seen == ["SUCCEEDED"] and waited.answered_by == f"{runs.root}/ (local)"
    never = Submission(new_experiment_id(), "arn", "/x", "elsewhere")
    assert refusal(client.wait, never).reason is Reason.NOT_FOUND
