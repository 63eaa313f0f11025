"""Sweeps on the local emulator: the Distributed Map reads the points manifest and runs one child per point, each
with its own record and job; a failed point never loses the others, and a cancel reaches every child."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from codeclab.experiments import api
from codeclab.experiments.sweep import point_id
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


def manifest(folder: Path) -> list[dict[str, Any]]:
    return saved(folder, "points.json")


def test_a_grid_sweep_gives_each_point_its_own_record_and_job(cloud: LocalCloud, tmp_path: Path) -> None:
    outcome = runner.run(cloud, sweep_spec(quality=[20, 40, 60, 80], max_concurrency=2), tmp_path)
    parent = saved(outcome.folder)
    assert parent["status"] == "SUCCEEDED" and parent["codec"] == "sweep"
    # the parent holds counts and a pointer to its manifest, not its points
    assert "points" not in parent and parent["point_count"] == 4
    assert parent["manifest_uri"].endswith(f"experiments/{outcome.experiment_id}/points.json")
    assert parent["result"] == {"points": 4, "succeeded": 4, "failed": 0, "not_started": 0}
    points = manifest(outcome.folder)
    assert [p["label"] for p in points] == [f"jpeg quality={q}" for q in (20, 40, 60, 80)]
    sizes = []
    for entry in points:
        folder = tmp_path / entry["experiment_id"]
        point = saved(folder)
        assert point["parent_id"] == outcome.experiment_id and point["status"] == "SUCCEEDED"
        assert point["point_index"] == entry["index"] and point["point_label"] == entry["label"]
        sizes.append(saved(folder, "result.json")["bitstream"]["bytes"])
    assert sizes == sorted(sizes) and len(set(sizes)) == 4  # the grid really varied the quality
    assert saved(outcome.folder, "alerts.json") == []
    # the map run's own summary went to the ResultWriter's prefix
    listed = boto3.client("s3").list_objects_v2(Bucket=cloud.bucket, Prefix="experiments/map-runs/")
    assert any(item["Key"].endswith("/manifest.json") for item in listed.get("Contents", []))


def test_one_failing_point_fails_the_sweep_with_one_alert_and_keeps_the_others(
    cloud: LocalCloud, tmp_path: Path
) -> None:
    broken = {"name": "custom", "code": BROKEN_CODEC}
    spec = sweep_spec(codecs=[{"name": "jpeg", "params": {"quality": 30}}, broken, {"name": "x264"}])
    outcome = runner.run(cloud, spec, tmp_path)
    parent = saved(outcome.folder)
    assert parent["status"] == "FAILED" and parent["error"]["type"] == "POINTS_FAILED"
    assert parent["result"] == {"points": 3, "succeeded": 2, "failed": 1, "not_started": 0}
    points = manifest(outcome.folder)
    failed_id = points[1]["experiment_id"]
    assert f"1 of 3 points did not succeed: custom ({failed_id}) FAILED CODEC_ERROR" in parent["error"]["message"]
    statuses = [saved(tmp_path / p["experiment_id"])["status"] for p in points]
    assert statuses == ["SUCCEEDED", "FAILED", "SUCCEEDED"]
    for good in (points[0], points[2]):
        assert saved(tmp_path / good["experiment_id"], "result.json")["status"] == "SUCCEEDED"
    alerts = saved(outcome.folder, "alerts.json")
    assert len(alerts) == 1 and "POINTS_FAILED" in alerts[0]["subject"]
    assert all(saved(tmp_path / p["experiment_id"], "alerts.json") == [] for p in points)


def test_a_sweep_with_an_invalid_point_starts_nothing(cloud: LocalCloud) -> None:
    sfn = boto3.client("stepfunctions")
    before = len(sfn.list_executions(stateMachineArn=cloud.state_machine_arn)["executions"])
    bad = sweep_spec(crf=[23, 28], codecs=[{"name": "x264"}, {"name": "jpeg"}])
    with pytest.raises(api.ApiError) as info:
        runner.submit(cloud, bad)
    assert info.value.status == 400
    assert "2 points (point 2 (jpeg crf=23), ...): $.codec.params: unknown parameter 'crf'" in info.value.message
    assert len(sfn.list_executions(stateMachineArn=cloud.state_machine_arn)["executions"]) == before


def test_cancelling_a_sweep_reaches_every_child(cloud: LocalCloud, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CODECLAB_FAULT", "slow:encode:0.5")
    spec = {**sweep_spec(quality=[30, 60, 90], max_concurrency=2),
            "source": {"clip": "builtin:carphone", "frames": 30}}  # fmt: skip
    submitted = runner.submit(cloud, spec)
    store = cloud.services().store
    first = point_id(submitted["experiment_id"], 0)
    wait_until_running(store, first)
    boto3.client("stepfunctions").stop_execution(executionArn=submitted["execution_arn"], cause="test")
    outcome = runner.collect(cloud, runner.wait(cloud, submitted), tmp_path)
    assert outcome.status == "ABORTED"
    statuses = [p["status"] for p in outcome.points]
    # the running children were stopped and finalised with the sweep's reason; the third never started
    assert statuses[:2] == ["ABORTED", "ABORTED"] and statuses[2] in {"ABORTED", "NOT_STARTED"}
    assert "the sweep ended first" in outcome.points[0]["error"]["message"]
    assert len(saved(outcome.folder, "alerts.json")) == 1
    time.sleep(1.5)  # a stopped child must not go on to run its job or start the next point
    assert {r["status"] for r in store.points_of(submitted["experiment_id"])} == {"ABORTED"}


def test_a_sweep_shows_its_progress_while_it_runs(cloud: LocalCloud, tmp_path: Path) -> None:
    broken = {"name": "custom", "code": BROKEN_CODEC}
    spec = sweep_spec(codecs=[broken, *({"name": "jpeg", "params": {"quality": q}} for q in range(10, 90, 10))],
                      max_concurrency=1)  # fmt: skip
    seen: list[str] = []
    stage = lambda r: seen.append(r.get("progress", {}).get("stage", ""))  # noqa: E731
    outcome = runner.run(cloud, spec, tmp_path, on_progress=stage)
    assert outcome.status == "FAILED"
    failed_id = point_id(outcome.experiment_id, 0)
    # the broken point came first: it was named, with its error type, while the others were still queued
    during = [line for line in seen if f"failed {failed_id} CODEC_ERROR" in line and "QUEUED" in line]
    assert during, seen
    group = "[^;]*"  # one ;-separated part of the line: its order within is not fixed
    rate = r"(ETA unknown|[\d.]+/min, ETA \d+m \d+s)"
    assert re.search(rf"\d+/9 done: {group}1 FAILED{group}; {group}QUEUED{group}; {rate}", during[0])
