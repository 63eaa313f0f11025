"""Sweep records through the real handlers: idempotent fan-out, aggregation, and nothing left unfinished."""

from __future__ import annotations

from collections.abc import Mapping
from types import ModuleType

import boto3
import pytest

from codeclab.experiments.ids import new_experiment_id
from codeclab.experiments.statuses import Status
from codeclab.experiments.store import ExperimentKey, ExperimentStore
from codeclab.experiments.sweep import point_id
from codeclab.experiments.workflow_steps import SweepPointsFailed
from tests.aws.conftest import TABLE, FakeContext, spec

EXECUTION_PREFIX = "arn:aws:states:us-east-1:123456789012:execution:codeclab"


def sweep(handlers: Mapping[str, ModuleType], context: FakeContext, name: str | None = None) -> dict:
    name = name or new_experiment_id()
    spec_data = {**spec(), "sweep": {"quality": [20, 50, 80], "max_concurrency": 2}}
    event = {"input": {"spec": spec_data}, "execution_arn": f"{EXECUTION_PREFIX}:{name}", "execution_name": name}
    return handlers["create_record"].handler(event, context)


def item(key_holder: dict) -> dict:
    return ExperimentStore(TABLE).get(ExperimentKey.of(key_holder))


def finish(point: dict, status: Status) -> None:
    store = ExperimentStore(TABLE)
    key = ExperimentKey.of(point)
    store.transition(key, Status.RUNNING)
    extra = {"error": {"type": "CODEC_ERROR", "message": "x", "cause": ""}} if status != Status.SUCCEEDED else {}
    store.transition(key, status, **extra)


def test_create_record_fans_a_sweep_out_into_point_records_once(handlers, context) -> None:
    name = new_experiment_id()
    first, again = sweep(handlers, context, name), sweep(handlers, context, name)
    assert first["codec"] == "sweep" and first["max_concurrency"] == 2
    assert [p["experiment_id"] for p in first["points"]] == [point_id(name, i) for i in range(3)]
    assert [p["timestamp"] for p in again["points"]] == [p["timestamp"] for p in first["points"]]
    assert len(boto3.resource("dynamodb").Table(TABLE).scan()["Items"]) == 4  # a retry made nothing new
    parent = item(first)
    assert parent["status"] == "RUNNING"
    assert [p["label"] for p in parent["points"]] == ["jpeg quality=20", "jpeg quality=50", "jpeg quality=80"]
    for index, point in enumerate(first["points"]):
        child = item(point)
        assert child["parent_id"] == name and child["point_index"] == index and child["status"] == "QUEUED"
        assert child["spec"]["codec"]["params"]["quality"] == (20, 50, 80)[index]


def test_aggregate_sweep_succeeds_only_when_every_point_did(handlers, context) -> None:
    record = sweep(handlers, context)
    for point in record["points"]:
        finish(point, Status.SUCCEEDED)
    outcome = handlers["aggregate_sweep"].handler(record, context)
    assert outcome["status"] == "SUCCEEDED" and "3 of 3 points succeeded" in outcome["summary"]
    parent = item(record)
    assert parent["status"] == "SUCCEEDED" and {p["status"] for p in parent["points"]} == {"SUCCEEDED"}


def test_aggregate_sweep_names_the_failed_points_and_finalises_a_stranded_one(handlers, context) -> None:
    record = sweep(handlers, context)
    finish(record["points"][0], Status.SUCCEEDED)
    finish(record["points"][1], Status.FAILED)  # the third is left QUEUED, as if its own handling failed too
    with pytest.raises(SweepPointsFailed, match="2 of 3 points did not succeed: jpeg quality=50"):
        handlers["aggregate_sweep"].handler(record, context)
    parent = item(record)
    assert parent["status"] == "FAILED" and parent["error"]["type"] == "POINTS_FAILED"
    assert [p["status"] for p in parent["points"]] == ["SUCCEEDED", "FAILED", "FAILED"]
    assert item(record["points"][2])["error"]["type"] == "INTERNAL"
    assert item(record["points"][0])["status"] == "SUCCEEDED"  # the good point is untouched


def test_a_failed_sweep_takes_its_unfinished_points_with_it(handlers, context) -> None:
    record = sweep(handlers, context)
    finish(record["points"][0], Status.SUCCEEDED)
    event = {"input": {"record": record, "error": {"Error": "States.Timeout", "Cause": ""}}}
    outcome = handlers["mark_failed"].handler({**event, "execution_arn": ""}, context)
    assert outcome["status"] == "TIMED_OUT"
    assert [item(p)["status"] for p in record["points"]] == ["SUCCEEDED", "TIMED_OUT", "TIMED_OUT"]
    assert "the sweep ended first" in item(record["points"][1])["error"]["message"]
