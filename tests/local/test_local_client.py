"""LocalClient against the real local workflow: every write goes through the stack's API handler, in this
process when it hosts the workflow, else over HTTP to the process that owns the experiment."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from codeclab.clients.base import Reason, Refused
from codeclab.clients.local import LocalClient
from codeclab.experiments.spec import Spec, validate_spec
from codeclab.experiments.statuses import Status
from codeclab.local.runs import RunsFolder
from codeclab.local.service import LocalService


def spec(frames: int = 3) -> Spec:
    return validate_spec(
        {
            "name": "client-jpeg",
            "source": {"clip": "builtin:carphone", "frames": frames},
            "codec": {"name": "jpeg", "params": {"quality": 60}},
            "metrics": {"vmaf": False},
        }
    )


def test_a_hosting_client_submits_through_its_own_api_handler_and_keeps_the_run(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    with LocalService(runs, kind="run") as service:
        client = LocalClient(runs, host=service)
        submission = client.submit(spec(), idempotency_key="once")
        assert submission.answered_by == f"the API handler in this process ({service.url})"
        assert client.submit(spec(), idempotency_key="once") == submission
        with pytest.raises(Refused) as bad:
            client.submit(Spec({"name": "no codec"}))  # unchecked on purpose: the API's own check refuses it
        assert bad.value.reason is Reason.INVALID and "codec" in bad.value.message
        record = client.wait(submission)
    assert record.status is Status.SUCCEEDED and record.answered_by == submission.answered_by
    folder = runs / submission.experiment_id
    assert json.loads((folder / "record.json").read_text()) == record.item
    assert json.loads((folder / "alerts.json").read_text()) == [] and (folder / "result.json").is_file()


def test_without_a_host_writes_go_to_the_process_that_owns_the_experiment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = tmp_path / "runs"
    with LocalService(runs, port=0) as served:
        client = LocalClient(runs)
        done = client.submit(spec())
        assert done.answered_by == f"codeclab serve at {served.url}"
        finished = client.wait(done)
        assert finished.status is Status.SUCCEEDED and finished.answered_by == f"{runs}/ (local)"

        monkeypatch.setenv("CODECLAB_FAULT", "slow:encode:0.5")
        slow = client.submit(spec(frames=30))
        deadline = time.monotonic() + 60
        while (RunsFolder(runs).record(slow.experiment_id) or {}).get("status") != "RUNNING":
            assert time.monotonic() < deadline, "never RUNNING"
            time.sleep(0.2)
        cancelled = client.cancel(slow.experiment_id)
        assert cancelled.answered_by == f"codeclab serve at {served.url}" and cancelled.cancel_requested
        aborted = client.wait(slow)
        assert aborted.status is Status.ABORTED and aborted.error is not None and aborted.error["type"] == "ABORTED"
        with pytest.raises(Refused) as again:
            client.cancel(slow.experiment_id)
        assert again.value.reason is Reason.ENDED
