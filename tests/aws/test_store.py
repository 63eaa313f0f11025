"""The composite-key store against moto, on the table the CDK stack defines."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError

from codeclab.experiments.ids import new_experiment_id
from codeclab.experiments.services import Services
from codeclab.experiments.statuses import Status, TransitionError
from codeclab.experiments.store import ExperimentKey, ExperimentNotFound
from tests.aws.conftest import TABLE, spec


def all_items() -> list[dict]:
    return boto3.resource("dynamodb").Table(TABLE).scan()["Items"]


def test_the_table_has_the_composite_key(table_definition: dict) -> None:
    assert table_definition["KeySchema"] == [
        {"AttributeName": "experiment_id", "KeyType": "HASH"},
        {"AttributeName": "timestamp", "KeyType": "RANGE"},
    ]


def test_an_update_keyed_by_experiment_id_alone_fails_on_this_table(services: Services) -> None:
    """The old bug, reproduced on the real key schema: this is why only ExperimentKey reaches the table."""
    key, _ = services.store.create(new_experiment_id(), spec())
    with pytest.raises(ClientError) as info:
        boto3.resource("dynamodb").Table(TABLE).update_item(
            Key={"experiment_id": key.experiment_id},
            UpdateExpression="SET #s = :s",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":s": "RUNNING"},
        )
    assert info.value.response["Error"]["Code"] == "ValidationException"
    assert services.store.transition(key, Status.RUNNING)["status"] == "RUNNING"


def test_a_key_cannot_be_built_from_the_id_alone() -> None:
    experiment_id = new_experiment_id()
    with pytest.raises(ValueError, match="both experiment_id and timestamp are needed; 'timestamp' is missing"):
        ExperimentKey.of({"experiment_id": experiment_id})
    with pytest.raises(ValueError, match="timestamp must be a positive integer"):
        ExperimentKey(experiment_id, 0)
    with pytest.raises(ValueError, match="not an experiment id"):
        ExperimentKey("42", 1700000000000)


def test_a_wrong_timestamp_creates_no_phantom_item_and_says_so(services: Services) -> None:
    key, _ = services.store.create(new_experiment_id(), spec())
    wrong = ExperimentKey(key.experiment_id, key.timestamp + 1)
    with pytest.raises(ExperimentNotFound, match=rf"no experiment {wrong}: nothing was written"):
        services.store.transition(wrong, Status.RUNNING)
    items = all_items()
    assert len(items) == 1 and items[0]["status"] == "QUEUED"


def test_a_final_status_is_permanent(services: Services) -> None:
    key, _ = services.store.create(new_experiment_id(), spec())
    services.store.transition(key, Status.ABORTED)
    with pytest.raises(TransitionError, match="cannot go from ABORTED to SUCCEEDED: a final status is permanent"):
        services.store.transition(key, Status.SUCCEEDED, result={"metrics": {}})
    item = services.store.get(key)
    assert item["status"] == "ABORTED" and "result" not in item


def test_transitions_are_checked_and_history_is_appended(services: Services) -> None:
    key, _ = services.store.create(new_experiment_id(), spec())
    services.store.transition(key, Status.RUNNING, job_id="job-1")
    with pytest.raises(ValueError, match="no status leads to QUEUED"):
        services.store.transition(key, Status.QUEUED)
    item = services.store.transition(key, Status.SUCCEEDED, result={"metrics": {"bpp": 0.25}})
    assert [h["status"] for h in item["history"]] == ["QUEUED", "RUNNING", "SUCCEEDED"]
    assert item["job_id"] == "job-1" and item["result"] == {"metrics": {"bpp": 0.25}}
    assert item["updated_at"] >= item["timestamp"]


def test_create_is_idempotent(services: Services) -> None:
    experiment_id = new_experiment_id()
    first, created = services.store.create(experiment_id, spec())
    again, created_again = services.store.create(experiment_id, spec(quality=90))
    assert (created, created_again) == (True, False)
    assert again == first and len(all_items()) == 1
    assert services.store.get(first)["spec"]["codec"]["params"] == {"quality": 50}


def test_find_is_a_query_on_the_id(services: Services) -> None:
    key, _ = services.store.create(new_experiment_id(), spec())
    assert ExperimentKey.of(services.store.find(key.experiment_id)) == key
    assert services.store.find(new_experiment_id()) is None
    assert services.store.find("not-an-id") is None


def test_floats_round_trip(services: Services) -> None:
    key, _ = services.store.create(new_experiment_id(), {"crf": 28.5})
    services.store.transition(key, Status.SUCCEEDED, result={"metrics": {"psnr_yuv": 35.88284910401379}})
    item = services.store.get(key)
    assert item["spec"] == {"crf": 28.5} and item["result"]["metrics"]["psnr_yuv"] == 35.88284910401379


def test_progress_is_recorded_until_the_experiment_is_final(services: Services) -> None:
    key, _ = services.store.create(new_experiment_id(), spec())
    services.store.set_progress(key, "encode", 3, 8)
    assert services.store.get(key)["progress"]["frames_done"] == 3
    services.store.transition(key, Status.FAILED, error={"type": "STALLED"})
    services.store.set_progress(key, "encode", 4, 8)  # a late report changes nothing
    assert services.store.get(key)["progress"]["frames_done"] == 3
    services.store.set_progress(ExperimentKey(key.experiment_id, key.timestamp + 5), "encode", 1, 8)
    assert len(all_items()) == 1


def test_list_by_status_pages_through_the_gsi(services: Services) -> None:
    keys = [services.store.create(new_experiment_id(), spec())[0] for _ in range(5)]
    services.store.transition(keys[0], Status.RUNNING)
    seen, token = [], None
    while True:
        page, token = services.store.list_by_status(Status.QUEUED, limit=2, start=token)
        seen += [item["experiment_id"] for item in page]
        if token is None:
            break
    assert sorted(seen) == sorted(k.experiment_id for k in keys[1:])
    running, _ = services.store.list_by_status(Status.RUNNING)
    assert [i["experiment_id"] for i in running] == [keys[0].experiment_id]
