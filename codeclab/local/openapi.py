"""The OpenAPI 3.1 document of the experiments API, rendered from its contract (codeclab/experiments/api_contract.py).

OpenAPI 3.1 schemas are JSON Schema 2020-12, so the spec schema goes in whole, if/then rules included
(unlike API Gateway's draft-04 model in stacks/api_model.py): its $defs become components and its refs
are rewritten to point at them.
"""

from __future__ import annotations

import copy
from typing import Any

from codeclab import __version__
from codeclab.experiments.api_contract import (
    COMPONENTS,
    JSON,
    ROUTES,
    SPEC_COMPONENT,
    Parameter,
    Response,
    Route,
    ref,
    request_schemas,
    response_schemas,
)
from codeclab.experiments.limits import CodecCaps

_DEFS = "#/$defs/"

_SIGV4 = {
    "type": "apiKey",
    "in": "header",
    "name": "Authorization",
    "description": "AWS Signature Version 4: on AWS every method uses AWS_IAM, so sign for execute-api "
    "(e.g. curl --aws-sigv4). The local server requires nothing, because it binds to loopback only.",
    "x-amazon-apigateway-authtype": "awsSigv4",
}


def openapi_document(server_url: str | None = None, caps: CodecCaps | None = None) -> dict[str, Any]:
    """The whole document; `server_url` (e.g. the local server's) becomes its one server, and `caps` (a
    deployment's caps on limits.codec, as a server knows them) become those fields' maxima, so a request its
    schema allows is never refused for asking more than the deployment gives. Without caps it is the contract
    API Gateway's model shares, where CreateRecord's 400 names the cap."""
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
            "schemas": {**spec_schemas(caps or {}), **response_schemas()},
            "securitySchemes": {"sigv4": _SIGV4},
        },
        # Either alternative satisfies it: signed on AWS, nothing on the loopback-only local server.
        "security": [{"sigv4": []}, {}],
    }
    if server_url:
        document["servers"] = [{"url": server_url}]
    return copy.deepcopy(document)  # callers may edit it; the module's shared parts must not change


def spec_schemas(caps: CodecCaps) -> dict[str, Any]:
    """The spec schema and its $defs as components, with every `#/$defs/X` ref now `#/components/schemas/X`,
    and each limits.codec field's maximum the deployment's cap."""
    schema = request_schemas()[SPEC_COMPONENT]
    for field, cap in caps.items():
        schema["$defs"]["limits"]["properties"]["codec"]["properties"][field]["maximum"] = cap
    defs: dict[str, Any] = schema.pop("$defs", {})
    # Without $id, refs resolve against this document; $schema is the document's dialect (2020-12) already.
    root = {key: value for key, value in schema.items() if key not in {"$id", "$schema"}}
    clashes = ({SPEC_COMPONENT} | set(response_schemas())) & set(defs)
    if clashes:
        raise ValueError(f"spec schema $defs {sorted(clashes)} clash with the API's own component names")
    return {name: _rewrite_refs(node) for name, node in {SPEC_COMPONENT: root, **defs}.items()}


def _rewrite_refs(node: Any) -> Any:
    if isinstance(node, list):
        return [_rewrite_refs(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _rewrite_refs(value) for key, value in node.items()}
    target = out.get("$ref")
    if isinstance(target, str):
        if not target.startswith(_DEFS):
            raise ValueError(f"cannot place ref {target!r} in the OpenAPI document; only {_DEFS}... refs are supported")
        out["$ref"] = COMPONENTS + target.removeprefix(_DEFS)
    return out


def _paths() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for route in ROUTES:
        item = paths.setdefault(route.path, {})
        shared = [_parameter(p) for p in route.parameters if p.location == "path"]  # the path's own, stated once
        if shared:
            item["parameters"] = shared
        item[route.method.lower()] = _operation(route)
    return paths


def _operation(route: Route) -> dict[str, Any]:
    operation: dict[str, Any] = {"operationId": route.operation_id, "summary": route.summary}
    parameters = [_parameter(p) for p in route.parameters if p.location != "path"]
    if parameters:
        operation["parameters"] = parameters
    if route.body:
        operation["requestBody"] = {"required": True, "content": {JSON: {"schema": ref(route.body)}}}
    operation["responses"] = {str(status): _response(response) for status, response in route.responses.items()}
    return operation


def _parameter(parameter: Parameter) -> dict[str, Any]:
    rendered: dict[str, Any] = {"name": parameter.name, "in": parameter.location, "required": parameter.required}
    if parameter.description:
        rendered["description"] = parameter.description
    return {**rendered, "schema": parameter.schema}


def _response(response: Response) -> dict[str, Any]:
    return {"description": response.description, "content": {JSON: {"schema": ref(response.component)}}}
