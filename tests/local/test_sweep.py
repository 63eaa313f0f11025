"""Sweeps on the local emulator: the Map fans out one record and one job per point, and a failed point
never loses the others."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from codeclab.experiments import api
from codeclab.local import runner
from codeclab.local.emulator import LocalCloud
from tests.conftest import wait_until_running

# A custom codec that always fails at encode: a real failure of one point, not a mock.
BROKEN_CODEC = (
    "def encode(frames, params):\n"
    "    raise RuntimeError('deliberately broken point')\n"
    "def decode(bitstream, header):\n"
    "    return None\n"
)


@pytest.fixture(scope="module")
def cloud() -> Iterator[LocalCloud]:
    with LocalCloud() as local:
        yield local


def sweep_spec(**sweep: Any) -> dict[str, Any]:
    return {
        "name": "carphone-sweep",
        "source": {"clip": "builtin:carphone", "frames": 2},
        "codec": {"name": "jpeg"},
        "metrics": {"vmaf": False},
        "sweep": sweep,
    }


def saved(folder: Path, name: str = "record.json") -> Any:
    return json.loads((folder / name).read_text())


def test_a_grid_sweep_gives_each_point_its_own_record_and_job(cloud: LocalCloud, tmp_path: Path) -> None:
    outcome = runner.run(cloud, sweep_spec(quality=[20, 40, 60, 80], max_concurrency=2), tmp_path)
    parent = saved(outcome.folder)
    assert parent["status"] == "SUCCEEDED" and parent["codec"] == "sweep"
    assert [p["label"] for p in parent["points"]] == [f"jpeg quality={q}" for q in (20, 40, 60, 80)]
    assert {p["status"] for p in parent["points"]} == {"SUCCEEDED"}
    assert parent["result"] == {"points": 4, "succeeded": 4, "failed": 0}
    sizes = []
    for summary in parent["points"]:
        folder = tmp_path / summary["experiment_id"]
        point = saved(folder)
        assert point["parent_id"] == outcome.experiment_id and point["status"] == "SUCCEEDED"
        assert point["timestamp"] == summary["timestamp"]
        sizes.append(saved(folder, "result.json")["bitstream"]["bytes"])
    assert sizes == sorted(sizes) and len(set(sizes)) == 4  # the grid really varied the quality
    assert saved(outcome.folder, "alerts.json") == []


def test_one_failing_point_fails_the_sweep_with_one_alert_and_keeps_the_others(
    cloud: LocalCloud, tmp_path: Path
) -> None:
    broken = {"name": "custom", "code": BROKEN_CODEC}
    spec = sweep_spec(codecs=[{"name": "jpeg", "params": {"quality": 30}}, broken, {"name": "x264"}])
    outcome = runner.run(cloud, spec, tmp_path)
    parent = saved(outcome.folder)
    assert parent["status"] == "FAILED" and parent["error"]["type"] == "POINTS_FAILED"
    failed_id = parent["points"][1]["experiment_id"]
    assert f"1 of 3 points did not succeed: custom ({failed_id}) FAILED CODEC_ERROR" in parent["error"]["message"]
    statuses = [saved(tmp_path / p["experiment_id"])["status"] for p in parent["points"]]
    assert statuses == ["SUCCEEDED", "FAILED", "SUCCEEDED"]
    for good in (parent["points"][0], parent["points"][2]):
        assert saved(tmp_path / good["experiment_id"], "result.json")["status"] == "SUCCEEDED"
    alerts = saved(outcome.folder, "alerts.json")
    assert len(alerts) == 1 and "POINTS_FAILED" in alerts[0]["subject"]
    assert all(saved(tmp_path / p["experiment_id"], "alerts.json") == [] for p in parent["points"])


def test_a_sweep_with_an_invalid_point_starts_nothing(cloud: LocalCloud) -> None:
    sfn = boto3.client("stepfunctions")
    before = len(sfn.list_executions(stateMachineArn=cloud.state_machine_arn)["executions"])
    bad = sweep_spec(crf=[23, 28], codecs=[{"name": "x264"}, {"name": "jpeg"}])
    with pytest.raises(api.ApiError) as info:
        runner.submit(cloud, bad)
    assert info.value.status == 400
    assert "point 2 (jpeg crf=23): $.codec.params: unknown parameter 'crf'" in info.value.message
    assert len(sfn.list_executions(stateMachineArn=cloud.state_machine_arn)["executions"]) == before


def test_cancelling_a_sweep_ends_every_point(cloud: LocalCloud, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CODECLAB_FAULT", "slow:encode:0.5")
    spec = {**sweep_spec(quality=[30, 60], max_concurrency=1), "source": {"clip": "builtin:carphone", "frames": 30}}
    submitted = runner.submit(cloud, spec)
    store = cloud.services().store
    parent = store.find(submitted["experiment_id"])
    while parent is None or "points" not in parent:
        parent = store.find(submitted["experiment_id"])
    wait_until_running(store, parent["points"][0]["experiment_id"])
    boto3.client("stepfunctions").stop_execution(executionArn=submitted["execution_arn"], cause="test")
    outcome = runner.collect(cloud, runner.wait(cloud, submitted), tmp_path)
    assert outcome.status == "ABORTED"
    assert [p["status"] for p in outcome.points] == ["ABORTED", "ABORTED"]
    assert len(saved(outcome.folder, "alerts.json")) == 1
