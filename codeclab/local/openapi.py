"""The OpenAPI 3.1 description of the experiments API, its request body generated from the spec schema.

OpenAPI 3.1 schemas are JSON Schema 2020-12, so the spec schema goes in whole, if/then rules included
(unlike API Gateway's draft-04 model in stacks/api_model.py): its $defs become components and its refs
are rewritten to point at them.
"""

from __future__ import annotations

import copy
from typing import Any

from codeclab import __version__
from codeclab.experiments.api import MAX_PAGE
from codeclab.experiments.ids import EXPERIMENT_ID_PATTERN
from codeclab.experiments.schema import load_schema
from codeclab.experiments.statuses import Status
from codeclab.experiments.sweep import MAX_POINTS

SPEC_COMPONENT = "ExperimentSpec"
_DEFS = "#/$defs/"
_COMPONENTS = "#/components/schemas/"
JSON = "application/json"
STATUSES = [status.value for status in Status]

_SIGV4 = {
    "type": "apiKey",
    "in": "header",
    "name": "Authorization",
    "description": "AWS Signature Version 4: on AWS every method uses AWS_IAM, so sign for execute-api "
    "(e.g. curl --aws-sigv4). The local server requires nothing, because it binds to loopback only.",
    "x-amazon-apigateway-authtype": "awsSigv4",
}
_ID_PARAMETER = {
    "name": "id",
    "in": "path",
    "required": True,
    "description": "the experiment id (exp_...); anything else is 404",
    "schema": {"type": "string", "pattern": EXPERIMENT_ID_PATTERN.pattern},
}


def openapi_document(server_url: str | None = None) -> dict[str, Any]:
    """The whole document; `server_url` (e.g. the local server's) becomes its one server."""
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "codeclab experiments API",
            "version": __version__,
            "description": "Submit, inspect, list and cancel codec experiments. Every bad input is a 4xx "
            "with a message naming what to fix.",
        },
        "paths": _paths(),
        "components": {
            "schemas": {**spec_schemas(), **_api_schemas()},
            "securitySchemes": {"sigv4": _SIGV4},
        },
        # Either alternative satisfies it: signed on AWS, nothing on the loopback-only local server.
        "security": [{"sigv4": []}, {}],
    }
    if server_url:
        document["servers"] = [{"url": server_url}]
    return copy.deepcopy(document)  # callers may edit it; the module's shared parts must not change


def spec_schemas() -> dict[str, Any]:
    """The spec schema and its $defs as components, with every `#/$defs/X` ref now `#/components/schemas/X`."""
    schema = copy.deepcopy(load_schema())
    defs: dict[str, Any] = schema.pop("$defs", {})
    # Without $id, refs resolve against this document; $schema is the document's dialect (2020-12) already.
    root = {key: value for key, value in schema.items() if key not in {"$id", "$schema"}}
    clashes = ({SPEC_COMPONENT} | set(_api_schemas())) & set(defs)
    if clashes:
        raise ValueError(f"spec schema $defs {sorted(clashes)} clash with the API's own component names")
    return {name: _rewrite_refs(node) for name, node in {SPEC_COMPONENT: root, **defs}.items()}


def _rewrite_refs(node: Any) -> Any:
    if isinstance(node, list):
        return [_rewrite_refs(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _rewrite_refs(value) for key, value in node.items()}
    ref = out.get("$ref")
    if isinstance(ref, str):
        if not ref.startswith(_DEFS):
            raise ValueError(f"cannot place ref {ref!r} in the OpenAPI document; only {_DEFS}... refs are supported")
        out["$ref"] = _COMPONENTS + ref.removeprefix(_DEFS)
    return out


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _COMPONENTS + name}


def _api_schemas() -> dict[str, Any]:
    status = {"type": "string", "enum": STATUSES}
    experiment_id = {"type": "string", "pattern": EXPERIMENT_ID_PATTERN.pattern}
    return {
        "Error": {
            "type": "object",
            "required": ["message"],
            "properties": {
                "message": {"type": "string"},
                "errors": {"type": "array", "items": _ref("Problem")},
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
                "spec": _ref(SPEC_COMPONENT),
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
                "items": {"type": "array", "items": _ref("Experiment")},
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


def _json_response(description: str, schema: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": _ref(schema)}}}


def _error(description: str) -> dict[str, Any]:
    return _json_response(description, "Error")


def _paths() -> dict[str, Any]:
    return {
        "/experiments": {"post": _submit(), "get": _list()},
        "/experiments/{id}": {
            "parameters": [_ID_PARAMETER],
            "get": {
                "operationId": "getExperiment",
                "summary": "The experiment's record.",
                "responses": {"200": _json_response("the record", "Experiment"), "404": _error("no such experiment")},
            },
        },
        "/experiments/{id}/cancel": {
            "parameters": [_ID_PARAMETER],
            "post": {
                "operationId": "cancelExperiment",
                "summary": "Stop the execution; the record becomes ABORTED.",
                "responses": {
                    "202": _json_response("cancelled", "Cancelled"),
                    "404": _error("no such experiment"),
                    "409": _error("the experiment already ended"),
                },
            },
        },
    }


def _submit() -> dict[str, Any]:
    return {
        "operationId": "submitExperiment",
        "summary": "Validate a spec and start its experiment.",
        "parameters": [
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "description": "A retried POST with the same key returns the same experiment and starts nothing new.",
                "schema": {"type": "string", "minLength": 1, "maxLength": 128},
            }
        ],
        "requestBody": {"required": True, "content": {JSON: {"schema": _ref(SPEC_COMPONENT)}}},
        "responses": {
            "202": _json_response("started (or, for a repeated Idempotency-Key, started before)", "Submitted"),
            "400": _error(
                "not JSON, not a valid spec (errors name each fault's path) or a bad Idempotency-Key; a sweep "
                f"also needs every point to be a valid experiment, and at most {MAX_POINTS} of them"
            ),
            "413": _error("the body is too large"),
        },
    }


def _list() -> dict[str, Any]:
    return {
        "operationId": "listExperiments",
        "summary": "One page of experiments in a status, newest first.",
        "parameters": [
            {"name": "status", "in": "query", "required": True, "schema": {"type": "string", "enum": STATUSES}},
            {
                "name": "limit",
                "in": "query",
                "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 50},
            },
            {
                "name": "next_token",
                "in": "query",
                "description": "from the previous page",
                "schema": {"type": "string"},
            },
        ],
        "responses": {
            "200": _json_response("one page", "ExperimentPage"),
            "400": _error("a missing or unknown status, a bad limit or a next_token not issued for that status"),
        },
    }
