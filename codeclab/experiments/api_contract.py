"""The experiments API's contract, defined once: its routes, their parameters, and the request and response schemas.

`codeclab/local/openapi.py` renders it as the OpenAPI 3.1 document; `stacks/api.py` and `stacks/api_model.py`
build API Gateway's resources, methods and request models from it. Pure data over the packaged spec schema, so
it stays as light as the rest of `codeclab.experiments`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Literal, NotRequired, TypedDict

from codeclab.experiments.api import MAX_PAGE
from codeclab.experiments.ids import EXPERIMENT_ID_PATTERN
from codeclab.experiments.schema import load_schema
from codeclab.experiments.statuses import Status
from codeclab.experiments.sweep import MAX_POINTS

JsonSchema = dict[str, Any]

JSON = "application/json"
SPEC_COMPONENT = "ExperimentSpec"
# Schemas name each other where the OpenAPI document keeps them: it is the one place they all live together.
COMPONENTS = "#/components/schemas/"
STATUSES = [status.value for status in Status]


class RequestContext(TypedDict):
    requestId: str
    stage: str
    identity: dict[str, str]
    httpMethod: str
    path: str


class ProxyEvent(TypedDict):
    """The REST API (v1) proxy event API Gateway sends the API handler; local mode builds the same."""

    httpMethod: str
    path: str
    resource: str
    headers: dict[str, str]
    multiValueHeaders: dict[str, list[str]]
    queryStringParameters: dict[str, str] | None
    multiValueQueryStringParameters: dict[str, list[str]] | None
    pathParameters: dict[str, str] | None
    body: str | None
    isBase64Encoded: bool
    requestContext: RequestContext


class ProxyResponse(TypedDict):
    """What the API handler answers API Gateway with."""

    statusCode: int
    body: str
    headers: NotRequired[dict[str, str]]
    multiValueHeaders: NotRequired[dict[str, list[str]]]
    isBase64Encoded: NotRequired[bool]


@dataclass(frozen=True)
class Parameter:
    name: str
    location: Literal["path", "query", "header"]
    schema: JsonSchema
    required: bool = False
    description: str | None = None


@dataclass(frozen=True)
class Response:
    description: str
    component: str  # the JSON body's schema, by component name


@dataclass(frozen=True)
class Route:
    method: Literal["GET", "POST"]
    path: str
    operation_id: str
    summary: str
    responses: dict[int, Response]
    parameters: tuple[Parameter, ...] = ()
    body: str | None = None  # the JSON request body's schema, by component name; required when there is one


def ref(component: str) -> JsonSchema:
    return {"$ref": COMPONENTS + component}


def request_schemas() -> dict[str, JsonSchema]:
    """Each request body's schema by component name: the spec schema, as packaged (a copy, to edit freely)."""
    return {SPEC_COMPONENT: copy.deepcopy(load_schema())}


def response_schemas() -> dict[str, JsonSchema]:
    """The API's own components: what it answers with."""
    status = {"type": "string", "enum": STATUSES}
    experiment_id = {"type": "string", "pattern": EXPERIMENT_ID_PATTERN.pattern}
    return {
        "Error": {
            "type": "object",
            "required": ["message"],
            "properties": {
                "message": {"type": "string"},
                "errors": {"type": "array", "items": ref("Problem")},
            },
        },
        "Problem": {
            "type": "object",
            "required": ["path", "message"],
            "properties": {
                "path": {"type": "string", "description": "JSON path of the fault, e.g. $.codec.params.crf"},
                "message": {"type": "string"},
            },
        },
        "Submitted": {
            "type": "object",
            "required": ["experiment_id", "execution_arn", "status_url"],
            "properties": {
                "experiment_id": experiment_id,
                "execution_arn": {"type": "string"},
                "status_url": {"type": "string", "description": "/experiments/{id}, relative to the API"},
            },
        },
        "Experiment": {
            "type": "object",
            "description": "The stored record; later steps add progress, result and error.",
            "required": ["experiment_id", "timestamp", "status"],
            "properties": {
                "experiment_id": experiment_id,
                "timestamp": {"type": "integer", "description": "creation time, epoch ms"},
                "status": status,
                "spec": ref(SPEC_COMPONENT),
                "execution_arn": {"type": "string"},
                "updated_at": {"type": "integer"},
                "history": {
                    "type": "array",
                    "items": {"type": "object", "properties": {"status": status, "at": {"type": "integer"}}},
                },
            },
            "additionalProperties": True,
        },
        "ExperimentPage": {
            "type": "object",
            "required": ["items", "next_token"],
            "properties": {
                "items": {"type": "array", "items": ref("Experiment")},
                "next_token": {
                    "type": ["string", "null"],
                    "description": "pass back for the next page; null at the end",
                },
            },
        },
        "Cancelled": {
            "type": "object",
            "description": "The stop is asked for; once the execution has stopped, the record's status is ABORTED.",
            "required": ["experiment_id", "status", "cancel_requested"],
            "properties": {
                "experiment_id": experiment_id,
                "status": {**status, "description": "the status when the cancel came (ABORTED if nothing ran yet)"},
                "cancel_requested": {"const": True},
            },
        },
    }


_EXPERIMENT_ID = Parameter(
    "id",
    "path",
    {"type": "string", "pattern": EXPERIMENT_ID_PATTERN.pattern},
    required=True,
    description="the experiment id (exp_...); anything else is 404",
)
_NOT_FOUND = Response("no such experiment", "Error")

ROUTES: tuple[Route, ...] = (
    Route(
        "POST",
        "/experiments",
        "submitExperiment",
        "Validate a spec and start its experiment.",
        parameters=(
            Parameter(
                "Idempotency-Key",
                "header",
                {"type": "string", "minLength": 1, "maxLength": 128},
                description="A retried POST with the same key returns the same experiment and starts nothing new.",
            ),
        ),
        body=SPEC_COMPONENT,
        responses={
            202: Response("started (or, for a repeated Idempotency-Key, started before)", "Submitted"),
            400: Response(
                "not JSON, not a valid spec (errors name each fault's path) or a bad Idempotency-Key; a sweep "
                f"also needs every point to be a valid experiment, and at most {MAX_POINTS} of them",
                "Error",
            ),
            413: Response("the body is too large", "Error"),
        },
    ),
    Route(
        "GET",
        "/experiments",
        "listExperiments",
        "One page of experiments in a status, newest first.",
        parameters=(
            Parameter("status", "query", {"type": "string", "enum": STATUSES}, required=True),
            Parameter("limit", "query", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 50}),
            Parameter("next_token", "query", {"type": "string"}, description="from the previous page"),
        ),
        responses={
            200: Response("one page", "ExperimentPage"),
            400: Response(
                "a missing or unknown status, a bad limit or a next_token not issued for that status", "Error"
            ),
        },
    ),
    Route(
        "GET",
        "/experiments/{id}",
        "getExperiment",
        "The experiment's record.",
        parameters=(_EXPERIMENT_ID,),
        responses={200: Response("the record", "Experiment"), 404: _NOT_FOUND},
    ),
    Route(
        "POST",
        "/experiments/{id}/cancel",
        "cancelExperiment",
        "Stop the execution; the record becomes ABORTED.",
        parameters=(_EXPERIMENT_ID,),
        responses={
            202: Response("cancelled", "Cancelled"),
            404: _NOT_FOUND,
            409: Response("the experiment already ended", "Error"),
        },
    ),
)
