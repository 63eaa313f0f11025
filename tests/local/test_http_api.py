"""The local HTTP API: real requests, through the real API handler, against moto."""

from __future__ import annotations

import base64
import http.client
import importlib
import json
import logging
import socket
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from jsonschema import Draft202012Validator
from moto import mock_aws
from openapi_spec_validator import validate
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from codeclab.experiments.ids import experiment_id_for, new_experiment_id
from codeclab.experiments.store import ExperimentStore
from codeclab.local.http_api import MAX_BODY_BYTES, serve_api
from codeclab.local.openapi import SPEC_COMPONENT, openapi_document
from tests.aws.conftest import BUCKET, LAMBDA_ENV, TABLE, FakeContext, spec
from tests.conftest import REPO

# urllib honours HTTP(S)_PROXY; these requests must reach the loopback server directly.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class Local:
    url: str
    state_machine_arn: str

    def executions(self) -> list[dict[str, Any]]:
        sfn = boto3.client("stepfunctions")
        return sfn.list_executions(stateMachineArn=self.state_machine_arn)["executions"]


def import_api_handler() -> Any:
    """lambdas/api.py, imported inside the mock so its module-scope clients are mocked."""
    sys.path.insert(0, str(REPO / "lambdas"))
    try:
        return importlib.reload(importlib.import_module("api"))
    finally:
        sys.path.remove(str(REPO / "lambdas"))


@pytest.fixture(scope="module")
def local(table_definition: dict[str, Any]) -> Iterator[Local]:
    definition = table_definition
    with pytest.MonkeyPatch.context() as env, mock_aws():
        for name, value in LAMBDA_ENV.items():
            env.setenv(name, value)
        boto3.client("dynamodb").create_table(TableName=TABLE, BillingMode="PAY_PER_REQUEST", **definition)
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        machine = {"StartAt": "Wait", "States": {"Wait": {"Type": "Pass", "End": True}}}
        arn = boto3.client("stepfunctions").create_state_machine(
            name="codeclab-test", definition=json.dumps(machine), roleArn="arn:aws:iam::123456789012:role/sfn"
        )["stateMachineArn"]
        env.setenv("STATE_MACHINE_ARN", arn)
        api = import_api_handler()
        # mock_aws is process-global, so the server's request threads see the same moto backends
        with serve_api(lambda event: api.handler(event, FakeContext())) as server:
            yield Local(server.url, arn)


def request(
    url: str, method: str = "GET", body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    if isinstance(body, dict):
        body = json.dumps(body)
    data = body.encode() if isinstance(body, str) else body
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with OPENER.open(req, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read())


def raw_post(url: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    """http.client sends header names exactly as given (urllib title-cases them)."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_post_starts_an_execution_named_after_the_experiment(local: Local) -> None:
    status, body = request(f"{local.url}/experiments", "POST", spec(), {"Content-Type": "application/json"})
    assert status == 202, body
    assert body["status_url"] == f"/experiments/{body['experiment_id']}"
    started = boto3.client("stepfunctions").describe_execution(executionArn=body["execution_arn"])
    assert started["name"] == body["experiment_id"]
    assert json.loads(started["input"]) == {"spec": spec()}


def test_the_idempotency_key_header_is_found_whatever_its_case(local: Local) -> None:
    before = len(local.executions())
    body = json.dumps(spec()).encode()
    first = raw_post(local.url, "/experiments", body, {"idempotency-key": "http-run-1"})
    second = raw_post(local.url, "/experiments", body, {"IDEMPOTENCY-KEY": "http-run-1"})
    assert first == second and first[0] == 202
    assert first[1]["experiment_id"] == experiment_id_for("http-run-1")
    assert len(local.executions()) == before + 1


def test_an_invalid_spec_is_400_with_each_fault_path_and_starts_nothing(local: Local) -> None:
    before = len(local.executions())
    status, body = request(f"{local.url}/experiments", "POST", spec(quality=101))
    assert status == 400
    assert body["errors"] == [{"path": "$.codec.params.quality", "message": "101 is greater than the maximum of 100"}]
    assert len(local.executions()) == before


@pytest.mark.parametrize("body", ["{not json", b"", b'{"name": "\xff"}'])
def test_malformed_bodies_are_400(local: Local, body: str | bytes) -> None:
    status, payload = request(f"{local.url}/experiments", "POST", body)
    assert status == 400 and payload["message"], payload


def test_an_oversized_body_is_413_and_starts_nothing(local: Local) -> None:
    before = len(local.executions())
    status, payload = request(f"{local.url}/experiments", "POST", b" " * (MAX_BODY_BYTES + 1))
    assert status == 413 and str(MAX_BODY_BYTES) in payload["message"]
    assert len(local.executions()) == before


def raw_request(url: str, method: str, path: str) -> tuple[int, http.client.HTTPMessage, bytes]:
    """Any method, as sent: urllib cannot send HEAD's bodiless answer through json.loads, nor QUERY at all."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request(method, path)
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("TRACE", "/experiments", "GET, POST"),
        ("QUERY", "/experiments", "GET, POST"),
        ("OPTIONS", "/experiments/exp_x", "GET"),
        ("PUT", "/experiments/exp_x/cancel", "POST"),
    ],
)
def test_an_undeclared_method_is_a_json_405_naming_the_allowed_ones(
    local: Local, method: str, path: str, allowed: str
) -> None:
    # Found by schemathesis: http.server answered TRACE and QUERY with an HTML 501, a server error.
    status, headers, body = raw_request(local.url, method, path)
    assert (status, headers["Allow"], headers["Content-Type"]) == (405, allowed, "application/json")
    assert json.loads(body) == {"message": f"{method} is not allowed on {path}; use {allowed}"}


def test_head_gets_the_405_headers_without_a_body_and_unknown_paths_stay_the_handlers(local: Local) -> None:
    status, headers, body = raw_request(local.url, "HEAD", "/experiments")
    assert (status, headers["Allow"], body) == (405, "GET, POST", b"")
    assert int(headers["Content-Length"]) > 0  # the length of the body a GET-like answer would have had
    status, _, body = raw_request(local.url, "TRACE", "/nope")
    assert status == 404 and json.loads(body)["message"]


def test_get_returns_the_record_and_404s_unknown_ids(local: Local) -> None:
    key, _ = ExperimentStore(TABLE).create(new_experiment_id(), spec())
    status, record = request(f"{local.url}/experiments/{key.experiment_id}")
    assert status == 200 and record["status"] == "QUEUED" and record["timestamp"] == key.timestamp
    assert request(f"{local.url}/experiments/{new_experiment_id()}")[0] == 404
    assert request(f"{local.url}/experiments/{new_experiment_id()}/cancel", "POST")[0] == 404
    assert request(f"{local.url}/nope", "DELETE")[0] == 404


def test_query_parameters_reach_the_handler(local: Local) -> None:
    ExperimentStore(TABLE).create(new_experiment_id(), spec())
    status, page = request(f"{local.url}/experiments?status=QUEUED&limit=1")
    assert status == 200 and len(page["items"]) == 1 and page["next_token"]
    assert request(f"{local.url}/experiments?status=PROCESSING")[0] == 400


@pytest.mark.parametrize("limit", ["%C2%B2", "%D9%A3", "-1", "1.0"])  # '²' and '٣' pass str.isdigit()
def test_a_limit_that_is_not_ascii_digits_is_400_naming_it(local: Local, limit: str) -> None:
    status, body = request(f"{local.url}/experiments?status=QUEUED&limit={limit}")
    assert status == 400 and body["message"] == "limit must be an integer from 1 to 100", (limit, body)


def _token(key: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode()


@pytest.mark.parametrize(
    "key",
    [
        {"experiment_id": "exp_" + "0" * 26, "timestamp": 10**40, "status": "QUEUED"},  # DynamoDB: too many digits
        {"experiment_id": 1, "timestamp": "x", "status": "QUEUED"},
        {"experiment_id": "", "timestamp": 1, "status": "QUEUED"},
        {"experiment_id": "exp_" + "0" * 26, "timestamp": True, "status": "QUEUED"},
        {"experiment_id": "exp_" + "0" * 26, "timestamp": 1, "status": "RUNNING"},  # another status's page
    ],
)
def test_a_forged_next_token_is_400_naming_it_not_a_500(local: Local, key: dict[str, Any]) -> None:
    status, body = request(f"{local.url}/experiments?status=QUEUED&next_token={_token(key)}")
    assert (status, body) == (400, {"message": "next_token is not one this API issued"}), key


def _document_validator(component: str) -> Draft202012Validator:
    registry, uri = _registry(openapi_document())
    return Draft202012Validator({"$ref": f"{uri}#/components/schemas/{component}"}, registry=registry)


def test_cancel_answers_as_the_document_says(local: Local) -> None:
    # The document promised status ABORTED; the answer is the status when the cancel came, and cancel_requested.
    _, submitted = request(f"{local.url}/experiments", "POST", spec())
    running, _ = ExperimentStore(TABLE).create(
        submitted["experiment_id"], spec(), execution_arn=submitted["execution_arn"]
    )
    unstarted_arn = local.state_machine_arn.replace(":stateMachine:", ":execution:") + ":never-started"
    never_started, _ = ExperimentStore(TABLE).create(new_experiment_id(), spec(), execution_arn=unstarted_arn)
    validator = _document_validator("Cancelled")
    for key, expected in ((running, "QUEUED"), (never_started, "ABORTED")):
        status, body = request(f"{local.url}/experiments/{key.experiment_id}/cancel", "POST")
        assert status == 202 and body["status"] == expected, body
        assert list(validator.iter_errors(body)) == []


def test_openapi_json_is_served_and_valid(local: Local) -> None:
    status, document = request(f"{local.url}/openapi.json")
    assert status == 200
    validate(document)
    assert document["servers"] == [{"url": local.url}]


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "::ffff:127.0.0.1", "example.com", ""])
def test_only_loopback_hosts_are_served(host: str) -> None:
    with pytest.raises(ValueError, match="loopback"):
        serve_api(lambda event: {}, host=host)


def test_localhost_means_127_0_0_1_without_a_lookup() -> None:
    server = serve_api(lambda event: {}, host="localhost")
    server.stop()
    assert server.url == f"http://127.0.0.1:{server.port}"


def test_ipv6_loopback_is_served_with_a_bracketed_url() -> None:
    try:
        server = serve_api(lambda event: {"statusCode": 204, "body": ""}, host="::1")
    except OSError:
        pytest.skip("no IPv6 loopback here")
    with server:
        assert server.url == f"http://[::1]:{server.port}"
        with OPENER.open(urllib.request.Request(f"{server.url}/x", method="DELETE"), timeout=10) as response:
            assert response.status == 204


def test_the_proxy_event_carries_what_api_gateway_would() -> None:
    events: list[dict[str, Any]] = []

    def invoke(event: dict[str, Any]) -> dict[str, Any]:
        events.append(event)
        return {"statusCode": 201, "multiValueHeaders": {"X-Seen": ["a", "b"]}, "body": '{"ok": true}'}

    with serve_api(invoke) as server:
        req = urllib.request.Request(f"{server.url}/a/b?x=1&x=2&y=", data=b'{"k": "\xc3\xa9"}', method="PATCH")
        req.add_header("X-Thing", "v")
        with OPENER.open(req, timeout=10) as response:
            assert response.status == 201 and response.headers.get_all("X-Seen") == ["a", "b"]
    (event,) = events
    assert event["httpMethod"] == "PATCH" and event["path"] == event["resource"] == "/a/b"
    assert event["queryStringParameters"] == {"x": "2", "y": ""}
    assert event["multiValueQueryStringParameters"] == {"x": ["1", "2"], "y": [""]}
    assert event["headers"]["X-Thing"] == "v" and event["multiValueHeaders"]["X-Thing"] == ["v"]
    assert event["body"] == '{"k": "é"}' and event["isBase64Encoded"] is False and event["pathParameters"] is None
    context = event["requestContext"]
    assert context["stage"] == "local" and context["identity"] == {"sourceIp": "127.0.0.1"} and context["requestId"]


def test_a_handler_that_raises_is_a_logged_500_and_a_malformed_response_a_502(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def boom(event: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("boom")

    with caplog.at_level(logging.ERROR), serve_api(boom) as server:
        status, payload = request(f"{server.url}/experiments", "POST", spec())
    assert status == 500 and "internal error" in payload["message"]
    assert any(record.exc_info and "boom" in str(record.exc_info[1]) for record in caplog.records)
    with serve_api(lambda event: {"body": "no status"}) as server:
        assert request(f"{server.url}/experiments")[0] == 502


def test_stop_after_the_loop_let_go_on_its_own_writes_to_no_closed_descriptor() -> None:
    """The race behind an EBADF seen once in a full run: the serving thread saw the stop flag at its own poll and
    closed the trigger's pipe before stop() pulled it. Here the loop is let go first, every time; the old stop then
    wrote to the closed descriptor (or to whatever file had taken its number)."""
    server = serve_api(lambda event: {"statusCode": 200, "body": "{}"}).start()
    assert server._thread is not None
    server._stopping.set()  # what stop() does first
    server._thread.join(10)  # the loop ends at its next poll and releases the trigger
    assert not server._thread.is_alive()
    server.stop()


def test_a_stopped_server_releases_its_port() -> None:
    with serve_api(lambda event: {"statusCode": 200, "body": "{}"}) as server:
        port = server.port
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))


def _registry(document: dict[str, Any]) -> tuple[Registry, str]:
    uri = "urn:codeclab:openapi"
    return Registry().with_resource(uri, DRAFT202012.create_resource(document)), uri


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def test_every_ref_in_the_document_resolves() -> None:
    # openapi_spec_validator does not follow refs inside if/then, so check each one here.
    document = openapi_document()
    registry, uri = _registry(document)
    resolver = registry.resolver(uri)
    refs = set(_refs(document))
    assert "#/components/schemas/codec_params/x264" in refs
    for ref in refs:
        assert resolver.lookup(ref).contents, ref


def test_the_request_schema_is_the_spec_schema_with_its_conditionals() -> None:
    document = openapi_document()
    body_schema = document["paths"]["/experiments"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    registry, uri = _registry(document)
    validator = Draft202012Validator({"$ref": uri + body_schema["$ref"]}, registry=registry)
    assert list(validator.iter_errors(spec())) == []
    assert [e.message for e in validator.iter_errors(spec(quality=101))]  # only the jpeg if/then rule says so
    assert [e.message for e in validator.iter_errors({**spec(), "extra": 1})]
    assert body_schema == {"$ref": f"#/components/schemas/{SPEC_COMPONENT}"}
    assert "$id" not in document["components"]["schemas"][SPEC_COMPONENT]
