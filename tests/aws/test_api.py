"""The API handler through API Gateway proxy events: right codes, and never a 500 for bad input."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from types import ModuleType
from typing import Any

import boto3
import pytest

from codeclab.experiments import api
from codeclab.experiments.api import ApiError
from codeclab.experiments.ids import experiment_id_for, new_experiment_id
from codeclab.experiments.limits import CODEC_CAPS
from codeclab.worker.packages.pack import pack
from tests.aws.conftest import BUCKET, FakeContext, spec
from tests.conftest import REPO


def call(
    handlers: Mapping[str, ModuleType],
    method: str,
    path: str,
    body: Any = None,
    headers: dict | None = None,
    query: dict | None = None,
) -> tuple[int, dict]:
    event = {
        "httpMethod": method,
        "path": path,
        "resource": path,
        "headers": headers or {},
        "multiValueHeaders": {},
        "queryStringParameters": query,
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "body": body if body is None or isinstance(body, str) else json.dumps(body),
        "isBase64Encoded": False,
        "requestContext": {"requestId": "r-1", "stage": "v1", "httpMethod": method, "path": path},
    }
    response = handlers["api"].handler(event, FakeContext())
    return response["statusCode"], json.loads(response["body"])


def executions(state_machine_arn: str) -> list[dict]:
    return boto3.client("stepfunctions").list_executions(stateMachineArn=state_machine_arn)["executions"]


def test_post_starts_an_execution_named_after_the_experiment(handlers, state_machine_arn) -> None:
    status, body = call(handlers, "POST", "/experiments", spec())
    assert status == 202
    assert body["status_url"] == f"/experiments/{body['experiment_id']}"
    (execution,) = executions(state_machine_arn)
    assert execution["name"] == body["experiment_id"] and execution["executionArn"] == body["execution_arn"]
    started = boto3.client("stepfunctions").describe_execution(executionArn=body["execution_arn"])
    assert json.loads(started["input"]) == {"spec": spec()}


def test_a_retried_post_with_the_same_idempotency_key_is_one_experiment(handlers, state_machine_arn) -> None:
    first = call(handlers, "POST", "/experiments", spec(), headers={"Idempotency-Key": "run-42"})
    second = call(handlers, "POST", "/experiments", spec(), headers={"idempotency-key": "run-42"})
    assert first == second and first[0] == 202
    assert first[1]["experiment_id"] == experiment_id_for("run-42")
    assert len(executions(state_machine_arn)) == 1


def test_an_invalid_spec_is_400_with_the_path_and_starts_nothing(handlers, state_machine_arn) -> None:
    status, body = call(handlers, "POST", "/experiments", spec(quality=101))
    assert status == 400
    assert body["errors"] == [{"path": "$.codec.params.quality", "message": "101 is greater than the maximum of 100"}]
    assert executions(state_machine_arn) == []


def test_a_codec_limit_over_the_operators_cap_is_400_naming_field_value_cap_and_setting(
    handlers, state_machine_arn, monkeypatch
) -> None:
    monkeypatch.setenv(CODEC_CAPS["wall_seconds"].env, "1200")  # as the stack sets it from cdk.json's context
    custom = json.loads((REPO / "examples" / "custom.json").read_text())
    over = {**custom, "limits": {"codec": {"wall_seconds": 1201, "memory_bytes": 65 << 30}}}
    status, body = call(handlers, "POST", "/experiments", over)
    assert status == 400
    assert body["errors"] == [
        {
            "path": "$.limits.codec.wall_seconds",
            "message": "1201 is over this deployment's cap of 1200; ask for at most 1200, or have the operator raise "
            "codecMaxWallSeconds in cdk.json's context (the stack's CODECLAB_CODEC_MAX_WALL_SECONDS)",
        },
        {  # no variable: the default cap, 64 GiB
            "path": "$.limits.codec.memory_bytes",
            "message": f"{65 << 30} is over this deployment's cap of {64 << 30}; ask for at most {64 << 30}, or have "
            "the operator raise codecMaxMemoryGib in cdk.json's context (the stack's CODECLAB_CODEC_MAX_MEMORY_BYTES)",
        },
    ]
    assert executions(state_machine_arn) == []
    at_cap = {**custom, "limits": {"codec": {"wall_seconds": 1200, "memory_bytes": 64 << 30}}}
    assert call(handlers, "POST", "/experiments", at_cap)[0] == 202


def test_a_test_set_is_read_by_the_api_and_a_bad_or_huge_one_is_400(handlers, state_machine_arn) -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="inputs")
    s3.put_object(Bucket="inputs", Key="ctc/set.csv", Body=b"uri,frames\na.y4m,lots\n")
    manifest = {**spec(), "source": {"test_set": "s3://inputs/ctc/set.csv"}}
    status, body = call(handlers, "POST", "/experiments", manifest)
    assert status == 400 and body["errors"][0]["path"] == "s3://inputs/ctc/set.csv line 2"
    listed = {**spec(), "source": {"test_set": [f"clips/sequence-{i:04}.y4m" for i in range(6000)]}}
    status, body = call(handlers, "POST", "/experiments", listed)
    assert status == 400 and "name a large test set by a manifest" in body["message"]
    assert executions(state_machine_arn) == []
    s3.put_object(Bucket="inputs", Key="ctc/set.csv", Body=b"uri,class\na.y4m,B\nb.y4m,C\n")
    assert call(handlers, "POST", "/experiments", manifest)[0] == 202


def test_a_codec_package_is_checked_by_the_api_only_under_the_codecs_prefix(
    handlers, state_machine_arn, tmp_path
) -> None:
    archive, _ = pack(REPO / "examples" / "codecs" / "blockdct", tmp_path)
    s3 = boto3.client("s3")
    s3.put_object(Bucket=BUCKET, Key="codecs/blockdct-0.1.tar.gz", Body=archive.read_bytes())
    s3.put_object(Bucket=BUCKET, Key="experiments/blockdct-0.1.tar.gz", Body=archive.read_bytes())

    def package(uri: str, **params: Any) -> dict[str, Any]:
        return {**spec(), "codec": {"name": "package", "uri": uri, "params": params}}

    status, body = call(handlers, "POST", "/experiments", package(f"s3://{BUCKET}/codecs/blockdct-0.1.tar.gz", step=0))
    assert status == 400 and body["errors"][0]["path"] == "$.codec.params.step"
    assert "blockdct 0.1's params schema" in body["errors"][0]["message"]
    for elsewhere in (f"s3://{BUCKET}/experiments/blockdct-0.1.tar.gz", str(archive), "s3://other/codecs/x.tar.gz"):
        status, body = call(handlers, "POST", "/experiments", package(elsewhere))
        assert status == 400 and body["errors"][0]["path"] == "$.codec.uri", elsewhere
    status, body = call(handlers, "POST", "/experiments", package(f"s3://{BUCKET}/codecs/missing.tar.gz"))
    assert status == 400 and "cannot read the package" in body["errors"][0]["message"]
    assert executions(state_machine_arn) == []
    assert (
        call(handlers, "POST", "/experiments", package(f"s3://{BUCKET}/codecs/blockdct-0.1.tar.gz", step=8))[0] == 202
    )


def test_in_local_mode_the_api_takes_a_local_package_path_too(services, state_machine_arn, tmp_path) -> None:
    body = json.dumps({**spec(), "codec": {"name": "package", "uri": str(REPO / "examples" / "codecs" / "blockdct")}})
    with pytest.raises(ApiError) as refused:
        api.submit(body, None, replace(services, state_machine_arn=state_machine_arn))
    assert refused.value.status == 400 and refused.value.details[0]["path"] == "$.codec.uri"
    local = replace(services, state_machine_arn=state_machine_arn, local_packages=True)
    assert api.submit(body, None, local)["experiment_id"]


@pytest.mark.parametrize(
    "body",
    [
        "{not json",
        "",
        "[]",
        "null",
        "42",
        '"spec"',
        json.dumps({"spec": spec()}),
        json.dumps({"name": "x" * 500}),
        json.dumps({**spec(), "source": {"clip": "s3://"}}),
        "\udcff",
        json.dumps({**spec(), "codec": "x264"}),
    ],
)
def test_malformed_bodies_are_400_never_500(handlers, state_machine_arn, body: str) -> None:
    status, payload = call(handlers, "POST", "/experiments", body)
    assert status == 400, payload
    assert payload["message"]
    assert executions(state_machine_arn) == []


def test_get_returns_the_record_and_404s_unknown_ids(handlers, services) -> None:
    key, _ = services.store.create(new_experiment_id(), spec())
    status, body = call(handlers, "GET", f"/experiments/{key.experiment_id}")
    assert status == 200 and body["status"] == "QUEUED" and body["timestamp"] == key.timestamp
    assert call(handlers, "GET", f"/experiments/{new_experiment_id()}")[0] == 404
    assert call(handlers, "GET", "/experiments/../../etc")[0] == 404
    assert call(handlers, "GET", "/experiments/exp_%27%20OR%201=1")[0] == 404


def test_list_by_status_paginates_and_rejects_bad_parameters(handlers, services) -> None:
    for _ in range(3):
        services.store.create(new_experiment_id(), spec())
    status, page = call(handlers, "GET", "/experiments", query={"status": "QUEUED", "limit": "2"})
    assert status == 200 and len(page["items"]) == 2 and page["next_token"]
    status, rest = call(handlers, "GET", "/experiments", query={"status": "QUEUED", "next_token": page["next_token"]})
    assert status == 200 and len(rest["items"]) == 1 and rest["next_token"] is None
    for query in (
        {},
        {"status": "PROCESSING"},
        {"status": "QUEUED", "limit": "0"},
        {"status": "QUEUED", "limit": "x"},
        {"status": "QUEUED", "next_token": "garbage!"},
        {"status": "QUEUED", "next_token": "e30="},
    ):
        assert call(handlers, "GET", "/experiments", query=query)[0] == 400, query


def test_cancel_stops_the_execution_and_aborts_the_record(handlers, state_machine_arn) -> None:
    _, submitted = call(handlers, "POST", "/experiments", spec())
    experiment_id = submitted["experiment_id"]
    create_event = {
        "input": {"spec": spec()},
        "execution_arn": submitted["execution_arn"],
        "execution_name": experiment_id,
    }
    handlers["create_record"].handler(create_event, FakeContext())
    status, body = call(handlers, "POST", f"/experiments/{experiment_id}/cancel")
    assert (status, body) == (202, {"experiment_id": experiment_id, "status": "QUEUED", "cancel_requested": True})
    described = boto3.client("stepfunctions").describe_execution(executionArn=submitted["execution_arn"])
    assert described["status"] == "ABORTED"
    # EventBridge delivers the status change; Reconcile ends the record
    event = {"detail": {k: described[k] for k in ("executionArn", "name", "status")}}
    assert handlers["reconcile"].handler(event, FakeContext())["status"] == "ABORTED"
    assert call(handlers, "GET", f"/experiments/{experiment_id}")[1]["status"] == "ABORTED"
    assert call(handlers, "POST", f"/experiments/{experiment_id}/cancel")[0] == 409
    assert call(handlers, "POST", f"/experiments/{new_experiment_id()}/cancel")[0] == 404


def test_cancel_without_an_execution_aborts_the_record_itself(handlers, services) -> None:
    key, _ = services.store.create(
        new_experiment_id(), spec(), execution_arn="arn:aws:states:us-east-1:123456789012:execution:gone:x"
    )
    status, body = call(handlers, "POST", f"/experiments/{key.experiment_id}/cancel")
    assert (status, body["status"]) == (202, "ABORTED")


def test_unknown_routes_are_404(handlers) -> None:
    assert call(handlers, "GET", "/nope")[0] == 404
    assert call(handlers, "DELETE", "/experiments")[0] == 404
