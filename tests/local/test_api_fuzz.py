"""Schemathesis fuzzes `codeclab serve` against its OpenAPI document: no 5xx, no disagreement, no stray execution.

Every operation gets schema-valid and schema-violating requests, seeded and bounded: the coverage phase's
fixed set (boundary values, missing or mistyped fields, undeclared methods) and MAX_EXAMPLES fuzzed ones.
Each answer goes through all of schemathesis's checks: not a server error, status code, content type,
headers and body as documented, valid data accepted, invalid data rejected, undeclared methods refused.
And no request the server refused may start a Step Functions execution, counted around every POST.

Valid submissions would each start a real experiment, so they carry one Idempotency-Key whose tiny
experiment the fixture runs first: the server still validates every body in full, then answers with that
experiment and starts nothing new. Invalid ones keep whatever key was generated, so a server that wrongly
accepted one would start a fresh execution, which the ledger catches.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import schemathesis
from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012
from schemathesis import Case, GenerationMode
from schemathesis.config import HealthCheck
from schemathesis.core.transport import Response
from schemathesis.generation.feedback import NO_FEEDBACK
from schemathesis.pytest._test_builder import build_operation_test

from codeclab.experiments.limits import codec_caps
from codeclab.experiments.statuses import Status
from codeclab.local.client import call_api
from codeclab.local.openapi import openapi_document
from codeclab.local.service import LocalService

MAX_EXAMPLES = 100  # per operation in the fuzzing phase, valid and invalid together; coverage adds a fixed set
SEED = 20260101
ANCHOR_KEY = "api-fuzz-anchor"
IDEMPOTENCY_KEY = "idempotency-key"  # compared in lower case: header names are case-insensitive
DEADLINE_S = 60
TINY_SPEC = {
    "name": "fuzz-anchor",
    "source": {"clip": "builtin:carphone", "frames": 1},
    "codec": {"name": "jpeg", "params": {"quality": 50}},
    "metrics": {"vmaf": False},
}


def generation_friendly(document: dict[str, Any]) -> dict[str, Any]:
    """The document with the codec's chain of if/then rules restated as one anyOf branch per codec name.

    The two say the same: `name` is required and one of the enum, so for a codec named N the rules that
    select N apply their `then`, and every other rule its `else`. Schemathesis's generator gives up on a chain of
    more than six conditions (and its coverage phase then spends minutes on the body), not on this.
    """
    document = copy.deepcopy(document)
    codec = document["components"]["schemas"]["codec"]
    rules = [(_rule_names(rule), rule) for rule in codec.pop("allOf")]
    selected = set().union(*(names for names, _ in rules))
    assert "name" in codec["required"] and selected <= set(codec["properties"]["name"]["enum"])
    codec["anyOf"] = [
        {
            "allOf": [
                {"properties": {"name": {"const": name}}},
                *[rule["then"] for names, rule in rules if name in names and "then" in rule],
                *[rule["else"] for names, rule in rules if name not in names and "else" in rule],
            ]
        }
        for name in codec["properties"]["name"]["enum"]
    ]
    return document


def _rule_names(rule: dict[str, Any]) -> set[str]:
    """The codec names a rule's `if` selects: it tests the name alone, against a const or an enum."""
    condition = rule["if"]["properties"]["name"]
    assert set(rule["if"]) == {"properties"} and set(rule["if"]["properties"]) == {"name"}, rule["if"]
    return {condition["const"]} if "const" in condition else set(condition["enum"])


# The document as a local server serves it: its limits.codec maxima are local mode's caps, the defaults.
CAPS = codec_caps({})
schema = schemathesis.openapi.from_dict(generation_friendly(openapi_document(caps=CAPS)))
schema.config.seed = SEED
schema.config.update(suppress_health_check=[HealthCheck.too_slow])  # CI's two busy cores must not fail it
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
    max_examples=MAX_EXAMPLES,
    deterministic=True,
    database="none",  # no example database: a run depends on the seed alone, not on earlier runs
)
OPERATIONS = {operation.label: operation for operation in (result.ok() for result in schema.get_all_operations())}


@dataclass
class Ledger:
    """Which executions accepted requests started, and how many requests there were."""

    accepted_arns: set[str] = field(default_factory=set)
    requests: int = 0
    refused: int = 0


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalService]:
    with LocalService(tmp_path_factory.mktemp("fuzz") / "runs", port=0) as service:
        try:
            yield service
        finally:
            stop_running(service)


@pytest.fixture(scope="module")
def ledger() -> Ledger:
    return Ledger()


@pytest.fixture(scope="module")
def anchor(served: LocalService, ledger: Ledger) -> str:
    """The experiment valid submissions name; ended before the fuzz starts, so none of it runs meanwhile."""
    status, body = post(served, TINY_SPEC, ANCHOR_KEY)
    assert status == 202, body
    ledger.accepted_arns.add(body["execution_arn"])
    assert wait_final(served, body["experiment_id"]) == Status.SUCCEEDED
    return str(body["experiment_id"])


def post(service: LocalService, spec: dict[str, Any], key: str | None = None) -> tuple[int, Any]:
    headers = {"Idempotency-Key": key} if key else {}
    return call_api(f"{service.url}/experiments", "POST", json.dumps(spec).encode(), headers)


def execution_arns(service: LocalService, status: str | None = None) -> set[str]:
    assert service.cloud is not None
    query = {"stateMachineArn": service.cloud.state_machine_arn, **({"statusFilter": status} if status else {})}
    pages = service.cloud.sfn.get_paginator("list_executions").paginate(**query)
    return {execution["executionArn"] for page in pages for execution in page["executions"]}


def stop_running(service: LocalService) -> None:
    """Stop what a failing run left running and let its worker go, before the emulator itself goes."""
    if service.cloud is None:
        return
    for arn in execution_arns(service, "RUNNING"):
        service.cloud.sfn.stop_execution(executionArn=arn, error="ABORTED", cause="api fuzz teardown")
    deadline = time.monotonic() + DEADLINE_S
    while execution_arns(service, "RUNNING") and time.monotonic() < deadline:
        time.sleep(0.2)


def wait_final(service: LocalService, experiment_id: str) -> str:
    deadline = time.monotonic() + DEADLINE_S
    while True:
        status, body = call_api(f"{service.url}/experiments/{experiment_id}")
        if status == 200 and Status(body["status"]).is_final:
            return str(body["status"])
        assert time.monotonic() < deadline, f"{experiment_id} did not end"
        time.sleep(0.2)


def takes_key(headers: dict[str, Any] | None) -> bool:
    """Whether the server would take the request's Idempotency-Key: absent, or 1 to 128 characters."""
    values = [value for name, value in (headers or {}).items() if name.lower() == IDEMPOTENCY_KEY]
    return all(isinstance(value, str) and 1 <= len(value) <= 128 for value in values)


def pin_valid_submission(case: Case) -> None:
    """A valid submission names the anchor experiment, so it starts nothing; an invalid one stays as generated."""
    if case.meta is not None and case.meta.generation.mode.is_positive and takes_key(case.headers):
        headers = {name: value for name, value in (case.headers or {}).items() if name.lower() != IDEMPOTENCY_KEY}
        case.headers = {**headers, "Idempotency-Key": ANCHOR_KEY}


def is_submission(case: Case) -> bool:
    return case.method.upper() == "POST" and case.operation.path == "/experiments"


def refused_for_an_unstatable_rule(case: Case, response: Response) -> bool:
    """A schema-valid request refused for a rule no schema keyword can state, with a 400 that names only it.

    A sweep may have at most 10,000 points, each a valid experiment (so a grid key must be a parameter of
    every swept codec); a test set's folder or manifest must exist and list clips, each its own sequence (so
    the refusal names the test set, or the manifest's line); a codec package must be one the API may read,
    whose own schema takes the params (so the refusal names the codec's uri or params); a next_token must be
    one the API issued, for the same status.
    """
    if response.status_code != 400:
        return False
    body = response.json()
    if is_submission(case) and isinstance(case.body, dict):
        source, codec = case.body.get("source"), case.body.get("codec")
        test_set = isinstance(source, dict) and "test_set" in source
        package = isinstance(codec, dict) and codec.get("name") == "package"
        allowed = ("$.sweep", *(["$.source.test_set"] if test_set else []), *(["$.codec"] if package else []))
        errors = body.get("errors", [])
        in_place = [e["path"].startswith(allowed) or (test_set and not e["path"].startswith("$")) for e in errors]
        return ("sweep" in case.body or test_set or package) and bool(errors) and all(in_place)
    return bool((case.query or {}).get("next_token")) and body == {"message": "next_token is not one this API issued"}


def record_executions(served: LocalService, ledger: Ledger, case: Case, response: Response, before: set[str]) -> None:
    """A refused request started nothing; an accepted one at most the execution it answered with."""
    started = execution_arns(served) - before
    ledger.requests += 1
    if response.status_code >= 300:
        ledger.refused += 1
        assert not started, f"a refused {case.method} {case.formatted_path} started {started}"
    else:
        assert started <= {response.json().get("execution_arn")}, f"unexpected executions {started}"
        ledger.accepted_arns |= started


def check_answer(case: Case, served: LocalService, ledger: Ledger) -> None:
    """One generated request: sent, its executions counted, its answer checked against the document."""
    if is_submission(case):
        pin_valid_submission(case)
    before = execution_arns(served) if case.method.upper() == "POST" else set()
    response = case.call(base_url=served.url)
    if case.method.upper() == "POST":
        record_executions(served, ledger, case, response, before)
    else:
        ledger.requests += 1
    # Such a refusal is still checked for everything else, and must name only that rule (above).
    unstatable = refused_for_an_unstatable_rule(case, response)
    excluded = [schemathesis.checks.positive_data_acceptance] if unstatable else []
    case.validate_response(response, excluded_checks=excluded)


# Each operation's test is the one schemathesis's pytest plugin builds (examples, coverage and fuzzing
# phases), built here: with pytest 9 the plugin's items share one node id, and xdist (make test) then
# runs a single one of them and reports it passed.
@pytest.mark.parametrize("label", sorted(OPERATIONS))
def test_every_answer_is_as_documented_and_no_refused_request_starts_anything(
    label: str, served: LocalService, anchor: str, ledger: Ledger
) -> None:
    fuzz = build_operation_test(
        config=schema.config, operation=OPERATIONS[label], test_func=check_answer, given_kwargs={}, feedback=NO_FEEDBACK
    )
    fuzz(served=served, ledger=ledger)


def test_every_execution_was_started_by_an_accepted_request(served: LocalService, ledger: Ledger) -> None:
    # The checks' own extra requests (undeclared methods, missing headers) are covered here as well.
    assert ledger.requests > 0 and ledger.refused > 0
    assert execution_arns(served) == ledger.accepted_arns


def test_the_fuzzed_document_is_the_served_one_with_the_codec_rules_restated(served: LocalService) -> None:
    status, served_document = call_api(f"{served.url}/openapi.json")
    assert status == 200 and served_document == openapi_document(served.url, CAPS)
    fuzzed = generation_friendly(openapi_document(served.url, CAPS))
    assert fuzzed["paths"] == served_document["paths"]
    fuzzed_schemas, served_schemas = fuzzed["components"]["schemas"], served_document["components"]["schemas"]
    assert {**fuzzed_schemas, "codec": None} == {**served_schemas, "codec": None}


def spec_validator(document: dict[str, Any]) -> Draft202012Validator:
    uri = "urn:codeclab:openapi"
    registry = Registry().with_resource(uri, DRAFT202012.create_resource(document))
    return Draft202012Validator({"$ref": f"{uri}#/components/schemas/ExperimentSpec"}, registry=registry)


def codec_corpus() -> Iterator[dict[str, Any]]:
    """Codecs right and wrong in each way the rules look at: name, params, and the custom-only fields."""
    names = [*openapi_document()["components"]["schemas"]["codec"]["properties"]["name"]["enum"], "nope"]
    params = [{}, {"quality": 50}, {"quality": 101}, {"crf": 23}, {"crf": 23, "qp": 20}, {"device": "cpu"}, {"x": 1}]
    extras = [{}, {"code": "x"}, {"code_uri": "c.py"}, {"code": "x", "code_uri": "c.py"}, {"allow_imports": ["math"]}]
    for name in names:
        for param in params:
            for extra in extras:
                yield {"name": name, "params": param, **extra}
    yield {"params": {}}


def test_the_restated_codec_rules_accept_exactly_what_the_served_ones_do() -> None:
    served, restated = spec_validator(openapi_document()), spec_validator(generation_friendly(openapi_document()))
    verdicts = []
    for codec in codec_corpus():
        body = {**TINY_SPEC, "codec": codec}
        verdicts.append(served.is_valid(body))
        assert restated.is_valid(body) == verdicts[-1], codec
    assert 0 < sum(verdicts) < len(verdicts)  # the corpus holds both kinds


def test_real_records_pages_and_cancels_are_as_documented(served: LocalService, anchor: str, ledger: Ledger) -> None:
    """What random ids never reach: an existing record, a page holding it, and both answers to a cancel."""
    for path, method, parameters in (
        ("/experiments/{id}", "GET", {"path_parameters": {"id": anchor}}),
        ("/experiments", "GET", {"query": {"status": "SUCCEEDED", "limit": 1}}),
        ("/experiments/{id}/cancel", "POST", {"path_parameters": {"id": anchor}}),  # ended: 409
    ):
        response = schema[path][method].Case(**parameters).call_and_validate(base_url=served.url)
        assert response.status_code == (409 if method == "POST" else 200), response.text
    status, submitted = post(served, {**TINY_SPEC, "source": {"clip": "builtin:carphone", "frames": 30}}, "fuzz-cancel")
    assert status == 202, submitted
    ledger.accepted_arns.add(submitted["execution_arn"])
    experiment_id = submitted["experiment_id"]
    wait_recorded(served, experiment_id)
    cancel = schema["/experiments/{id}/cancel"]["POST"].Case(path_parameters={"id": experiment_id})
    response = cancel.call_and_validate(base_url=served.url)
    assert response.status_code in (202, 409), response.text  # 409 only if 30 frames beat the cancel
    assert wait_final(served, experiment_id) == (Status.ABORTED if response.status_code == 202 else Status.SUCCEEDED)


def wait_recorded(service: LocalService, experiment_id: str) -> None:
    """The workflow's first step creates the record; until then the id is 404."""
    deadline = time.monotonic() + DEADLINE_S
    while call_api(f"{service.url}/experiments/{experiment_id}")[0] == 404:
        assert time.monotonic() < deadline, f"{experiment_id} was never recorded"
        time.sleep(0.05)
