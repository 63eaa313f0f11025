"""Concurrent queries and writes on the emulator's table (issue 18): moto walks a table's item dicts for an index
query while another server thread adds an item, which failed with "dictionary changed size during iteration".
patches.py makes each item operation whole under one lock; the control takes the lock away and sees the race."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import nullcontext
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from codeclab.experiments.store import PARENT_INDEX
from codeclab.local import patches
from codeclab.local.emulator import LocalCloud

PARENT = "exp_00000000000000000000000000"
ITEMS = 3000  # a long walk for every query: the race's window
SECONDS = 4.0  # with the lock: this long without an error
CONTROL_SECONDS = 60.0  # without it: until the first error, at most this long
NO_RETRIES = Config(retries={"max_attempts": 1, "mode": "standard"})  # a server error must surface, not be retried


@pytest.fixture(scope="module")
def cloud() -> Iterator[LocalCloud]:
    with LocalCloud() as local:
        dynamodb = boto3.client("dynamodb", config=NO_RETRIES)
        for start in range(0, ITEMS, 25):
            requests = [{"PutRequest": {"Item": _point(i)}} for i in range(start, min(start + 25, ITEMS))]
            dynamodb.batch_write_item(RequestItems={local.table_name: requests})
        yield local


def _point(index: int) -> dict[str, dict[str, str]]:
    return {"experiment_id": {"S": f"exp_{index:026d}"}, "timestamp": {"N": str(index + 1)},
            "parent_id": {"S": PARENT}, "point_index": {"N": str(index)}, "status": {"S": "QUEUED"}}  # fmt: skip


def _hammer(table: str, seconds: float, until_error: bool = False) -> list[str]:
    """Three threads add items while two query the parent index, for `seconds` (or until the first error, if
    `until_error`); the errors they got."""
    errors: list[str] = []
    stop = time.monotonic() + seconds
    counter = iter(range(ITEMS, ITEMS * 100))
    calls = {"put": 0, "query": 0}
    # made here: making clients from boto3's default session is not thread-safe
    clients = [boto3.client("dynamodb", config=NO_RETRIES) for _ in range(5)]

    def write(client: Any) -> None:
        while time.monotonic() < stop and not (until_error and errors):
            try:
                client.put_item(TableName=table, Item=_point(next(counter)))
                calls["put"] += 1
            except (ClientError, BotoCoreError) as exc:  # a 500, or a connection the server dropped
                errors.append(f"{type(exc).__name__}: {exc}")

    def query(client: Any) -> None:
        while time.monotonic() < stop and not (until_error and errors):
            try:
                client.query(TableName=table, IndexName=PARENT_INDEX, Select="COUNT",
                             KeyConditionExpression="parent_id = :p",
                             ExpressionAttributeValues={":p": {"S": PARENT}})  # fmt: skip
                calls["query"] += 1
            except (ClientError, BotoCoreError) as exc:  # a 500, or a connection the server dropped
                errors.append(f"{type(exc).__name__}: {exc}")

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads often: the race needs a switch inside the walk
    try:
        targets = (write, write, write, query, query)
        threads = [threading.Thread(target=t, args=(c,)) for t, c in zip(targets, clients, strict=True)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert calls["put"] and calls["query"], calls  # both sides really ran
    return errors


def test_concurrent_queries_and_writes_all_succeed(cloud: LocalCloud) -> None:
    assert _hammer(cloud.table_name, SECONDS) == []


def test_control_without_the_lock_the_race_happens(cloud: LocalCloud, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(patches, "_items_lock", nullcontext())
    errors = _hammer(cloud.table_name, CONTROL_SECONDS, until_error=True)
    assert errors, "no race without the lock: this test no longer shows what the lock prevents"
    assert any("500" in error or "InternalFailure" in error or "Connection" in error for error in errors), errors
