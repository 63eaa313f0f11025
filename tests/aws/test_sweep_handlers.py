"""Sweep records through the real handlers: the manifest, each point's record made once by its child, aggregation
from the parent index, and nothing left unfinished."""

from __future__ import annotations

import json
from collections.abc import Mapping
from types import ModuleType

import boto3
import pytest

from codeclab.experiments.ids import new_experiment_id
from codeclab.experiments.statuses import Status
from codeclab.experiments.store import ExperimentKey, ExperimentStore
from codeclab.experiments.sweep import point_id
from codeclab.experiments.workflow_steps import SweepAlreadyEnded, SweepPointsFailed
from tests.aws.conftest import BUCKET, TABLE, FakeContext, spec

EXECUTION_PREFIX = "arn:aws:states:us-east-1:123456789012:execution:codeclab"


def sweep(handlers: Mapping[str, ModuleType], context: FakeContext, name: str | None = None, **grid) -> dict:
    name = name or new_experiment_id()
    spec_data = {**spec(), "sweep": grid or {"quality": [20, 50, 80], "max_concurrency": 2}}
    event = {"input": {"spec": spec_data}, "execution_arn": f"{EXECUTION_PREFIX}:{name}", "execution_name": name}
    return handlers["create_record"].handler(event, context)


def manifest(record: dict) -> list[dict]:
    location = record["manifest"]
    return json.loads(boto3.client("s3").get_object(**location)["Body"].read())


def start(handlers: Mapping[str, ModuleType], context: FakeContext, record: dict, *indexes: int) -> list[dict]:
    """What the children do first: CreatePoint for each manifest point (all of them when none are named)."""
    points = manifest(record)
    chosen = [points[i] for i in indexes] if indexes else points
    return [handlers["create_point"].handler({"point": point}, context) for point in chosen]


def item(key_holder: dict) -> dict:
    return ExperimentStore(TABLE).get(ExperimentKey.of(key_holder))


def finish(point: dict, status: Status) -> None:
    store = ExperimentStore(TABLE)
    key = ExperimentKey.of(point)
    store.transition(key, Status.RUNNING)
    extra = {"error": {"type": "CODEC_ERROR", "message": "x", "cause": ""}} if status != Status.SUCCEEDED else {}
    store.transition(key, status, **extra)


def test_create_record_writes_a_manifest_and_a_parent_with_counts_not_points(handlers, context) -> None:
    name = new_experiment_id()
    first, again = sweep(handlers, context, name), sweep(handlers, context, name)
    assert first["codec"] == "sweep" and first["max_concurrency"] == 2 and first["points"] == 3
    assert again["timestamp"] == first["timestamp"] and again["manifest"] == first["manifest"]
    assert len(boto3.resource("dynamodb").Table(TABLE).scan()["Items"]) == 1  # the parent only; a retry made nothing
    parent = item(first)
    assert parent["status"] == "RUNNING" and parent["point_count"] == 3 and "points" not in parent
    assert parent["manifest_uri"] == f"s3://{BUCKET}/experiments/{name}/points.json"
    points = manifest(first)
    assert [p["experiment_id"] for p in points] == [point_id(name, i) for i in range(3)]
    assert [p["label"] for p in points] == ["jpeg quality=20", "jpeg quality=50", "jpeg quality=80"]
    assert [p["spec"]["codec"]["params"]["quality"] for p in points] == [20, 50, 80]


def test_concurrency_is_bounded_by_the_compute_environment(handlers, context) -> None:
    # MAX_SWEEP_CONCURRENCY is the stack's max vCPUs over a job's (4 here); a smaller request stands
    assert sweep(handlers, context, quality=[1, 2], max_concurrency=200)["max_concurrency"] == 4
    assert sweep(handlers, context, quality=[1, 2], max_concurrency=3)["max_concurrency"] == 3


def test_create_point_makes_the_points_record_once(handlers, context) -> None:
    record = sweep(handlers, context)
    (point,) = start(handlers, context, record, 1)
    (again,) = start(handlers, context, record, 1)
    assert again["timestamp"] == point["timestamp"] and not again["created"]
    child = item(point)
    assert child["parent_id"] == record["experiment_id"] and child["point_index"] == 1
    assert child["status"] == "QUEUED" and child["spec"]["codec"]["params"]["quality"] == 50
    assert child["execution_arn"] == f"{EXECUTION_PREFIX}:{record['experiment_id']}"  # cancelling it stops the sweep


def test_a_child_that_starts_after_its_sweep_ended_creates_nothing(handlers, context) -> None:
    record = sweep(handlers, context)
    ExperimentStore(TABLE).transition(ExperimentKey.of(record), Status.ABORTED)
    with pytest.raises(SweepAlreadyEnded):
        start(handlers, context, record, 0)
    assert ExperimentStore(TABLE).find(point_id(record["experiment_id"], 0)) is None


def test_aggregate_sweep_counts_from_the_parent_index_and_succeeds_only_when_every_point_did(handlers, context) -> None:
    record = sweep(handlers, context)
    for point in start(handlers, context, record):
        finish(point, Status.SUCCEEDED)
    outcome = handlers["aggregate_sweep"].handler(record, context)
    assert outcome["status"] == "SUCCEEDED" and "3 of 3 points succeeded" in outcome["summary"]
    parent = item(record)
    assert parent["status"] == "SUCCEEDED"
    assert parent["result"] == {"points": 3, "succeeded": 3, "failed": 0, "not_started": 0}


def test_aggregate_sweep_names_the_failed_points_and_finalises_a_stranded_one(handlers, context) -> None:
    record = sweep(handlers, context)
    points = start(handlers, context, record)
    finish(points[0], Status.SUCCEEDED)
    finish(points[1], Status.FAILED)  # the third is left QUEUED, as if its own handling failed too
    with pytest.raises(SweepPointsFailed, match="2 of 3 points did not succeed: jpeg quality=50"):
        handlers["aggregate_sweep"].handler(record, context)
    parent = item(record)
    assert parent["status"] == "FAILED" and parent["error"]["type"] == "POINTS_FAILED"
    assert parent["result"] == {"points": 3, "succeeded": 1, "failed": 2, "not_started": 0}
    assert item(points[2])["error"]["type"] == "INTERNAL"
    assert item(points[0])["status"] == "SUCCEEDED"  # the good point is untouched


def test_a_point_that_never_started_fails_the_sweep_by_name(handlers, context) -> None:
    record = sweep(handlers, context)
    for point in start(handlers, context, record, 0, 2):  # point 1's child died before CreatePoint wrote
        finish(point, Status.SUCCEEDED)
    with pytest.raises(SweepPointsFailed, match=r"1 of 3 points did not succeed: jpeg quality=50 \(exp_\w+\) never"):
        handlers["aggregate_sweep"].handler(record, context)
    assert item(record)["result"] == {"points": 3, "succeeded": 2, "failed": 0, "not_started": 1}


def test_a_failed_sweep_takes_its_unfinished_points_with_it(handlers, context) -> None:
    record = sweep(handlers, context)
    points = start(handlers, context, record, 0, 1)
    finish(points[0], Status.SUCCEEDED)
    event = {"input": {"record": record, "error": {"Error": "States.Timeout", "Cause": ""}}}
    outcome = handlers["mark_failed"].handler({**event, "execution_arn": ""}, context)
    assert outcome["status"] == "TIMED_OUT"
    assert [item(p)["status"] for p in points] == ["SUCCEEDED", "TIMED_OUT"]
    assert "the sweep ended first" in item(points[1])["error"]["message"]
    assert ExperimentStore(TABLE).find(point_id(record["experiment_id"], 2)) is None  # never started: no record


def test_a_point_whose_create_point_failed_is_not_recorded_under_its_child_executions_name(handlers, context) -> None:
    record = sweep(handlers, context)
    point = manifest(record)[0]
    child_arn = f"{EXECUTION_PREFIX}/RunPoints:4f1c2a9e-0000-4000-8000-000000000000"
    state = {"point": point, "error": {"Error": "Lambda.ServiceException", "Cause": ""}}
    outcome = handlers["mark_failed"].handler({"input": state, "execution_arn": child_arn}, context)
    assert outcome["experiment_id"] == point["experiment_id"]
    assert len(boto3.resource("dynamodb").Table(TABLE).scan()["Items"]) == 1  # only the sweep: nothing invented
