"""Concurrent load through `codeclab serve`'s HTTP API: 20 experiments at once, and idempotent retries.

Everything is real: the HTTP server, the API handler, the emulated workflow, the worker processes and
the collector that writes runs/. A lost or duplicated record here would be a bug in that path.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from boto3.dynamodb.conditions import Key

from codeclab.experiments.ids import experiment_id_for
from codeclab.experiments.statuses import Status
from codeclab.local.client import call_api
from codeclab.local.service import LocalService

COUNT = 20
DEADLINE_S = 80


def load_spec(n: int) -> dict[str, Any]:
    return {
        "name": f"load-{n}",
        "source": {"clip": "builtin:carphone", "frames": 1},
        "codec": {"name": "jpeg", "params": {"quality": 50}},
        "metrics": {"vmaf": False},
    }


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalService]:
    with LocalService(tmp_path_factory.mktemp("load") / "runs", port=0) as service:
        yield service


def post(service: LocalService, spec: dict[str, Any], key: str | None = None) -> dict[str, Any]:
    headers = {"Idempotency-Key": key} if key else {}
    status, body = call_api(f"{service.url}/experiments", "POST", json.dumps(spec).encode(), headers)
    assert status == 202, body
    return body


def at_once(jobs: list[Callable[[], Any]]) -> list[Any]:
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        return list(pool.map(lambda job: job(), jobs))


def executions(service: LocalService) -> list[dict[str, Any]]:
    assert service.cloud is not None
    pages = service.cloud.sfn.get_paginator("list_executions").paginate(stateMachineArn=service.cloud.state_machine_arn)
    return [execution for page in pages for execution in page["executions"]]


def stored_items(service: LocalService, experiment_id: str) -> list[dict[str, Any]]:
    """Every item under the id's partition key: find() returns only the newest, which would hide a duplicate."""
    assert service.cloud is not None
    table = service.cloud.services().store.table
    return table.query(KeyConditionExpression=Key("experiment_id").eq(experiment_id), ConsistentRead=True)["Items"]


def poll(what: str, done: Callable[[], bool], deadline: float) -> None:
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def final_status(service: LocalService, experiment_id: str) -> str | None:
    status, body = call_api(f"{service.url}/experiments/{experiment_id}")
    if status == 404:
        return None  # the workflow's first step has not created the record yet
    assert status == 200, body
    return body["status"] if Status(body["status"]).is_final else None


def collected(runs: Path, experiment_id: str) -> bool:
    path = runs / experiment_id / "record.json"
    return path.is_file() and json.loads(path.read_text())["status"] == Status.SUCCEEDED


def test_twenty_concurrent_posts_all_succeed_once_and_are_collected(served: LocalService) -> None:
    deadline = time.monotonic() + DEADLINE_S
    before = {e["executionArn"] for e in executions(served)}
    submitted = at_once([lambda n=n: post(served, load_spec(n)) for n in range(COUNT)])
    ids = {s["experiment_id"] for s in submitted}
    assert len(ids) == COUNT

    finals: dict[str, str] = {}

    def all_final() -> bool:
        for experiment_id in ids - finals.keys():
            if status := final_status(served, experiment_id):
                finals[experiment_id] = status
        return len(finals) == COUNT

    poll("all experiments to end", all_final, deadline)
    assert set(finals.values()) == {Status.SUCCEEDED}, finals
    assert {i: len(stored_items(served, i)) for i in ids} == dict.fromkeys(ids, 1)
    started = [e for e in executions(served) if e["executionArn"] not in before]
    assert sorted(e["name"] for e in started) == sorted(ids)
    assert {e["executionArn"] for e in started} == {s["execution_arn"] for s in submitted}
    poll("the collector to write runs/", lambda: all(collected(served.runs.root, i) for i in ids), deadline)


def test_an_idempotency_key_yields_one_experiment_and_one_execution(served: LocalService) -> None:
    before = {e["executionArn"] for e in executions(served)}
    retried = [post(served, load_spec(100), key="load-retry"), post(served, load_spec(100), key="load-retry")]
    raced = at_once([lambda: post(served, load_spec(101), key="load-race")] * 2)
    for key, answers in (("load-retry", retried), ("load-race", raced)):
        assert {a["experiment_id"] for a in answers} == {experiment_id_for(key)}, answers
    started = [e for e in executions(served) if e["executionArn"] not in before]
    assert sorted(e["name"] for e in started) == sorted(
        {experiment_id_for("load-retry"), experiment_id_for("load-race")}
    )
    deadline = time.monotonic() + DEADLINE_S
    for key in ("load-retry", "load-race"):
        experiment_id = experiment_id_for(key)
        poll(f"{key} to end", lambda: final_status(served, experiment_id) is not None, deadline)  # noqa: B023
        assert len(stored_items(served, experiment_id)) == 1
