"""API Gateway, as synthesized, and the OpenAPI document describe one API: the same routes, the same parameters and
the same request schema (the model is its draft-04 form)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from codeclab.local.openapi import openapi_document
from stacks.api_model import to_draft4

METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}
COMPONENT_REF = re.compile(r'"#/components/schemas/([^"/]+)')
LOCATIONS = {"query": "querystring", "header": "header"}


def _path(resource_ref: dict[str, Any], resources: dict[str, dict[str, Any]]) -> str:
    if "Fn::GetAtt" in resource_ref:  # the RestApi's RootResourceId
        return ""
    resource = resources[resource_ref["Ref"]]["Properties"]
    return f"{_path(resource['ParentId'], resources)}/{resource['PathPart']}"


@pytest.fixture(scope="module")
def gateway(synth) -> dict[tuple[str, str], dict[str, Any]]:
    """Each method API Gateway serves, by (METHOD, path), with its properties."""
    resources = synth.of_type("AWS::ApiGateway::Resource")
    return {
        (method["Properties"]["HttpMethod"], _path(method["Properties"]["ResourceId"], resources)): method["Properties"]
        for method in synth.of_type("AWS::ApiGateway::Method").values()
        if method["Properties"]["HttpMethod"] != "OPTIONS"
    }


@pytest.fixture(scope="module")
def documented() -> dict[tuple[str, str], dict[str, Any]]:
    """Each operation of the OpenAPI document by (METHOD, path), its path's parameters merged into its own."""
    return {
        (method.upper(), path): {
            **operation,
            "parameters": [*item.get("parameters", []), *operation.get("parameters", [])],
        }
        for path, item in openapi_document()["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    }


def test_the_same_routes(gateway, documented):
    assert set(gateway) == set(documented)
    assert len(documented) == 4


def test_the_same_query_and_header_parameters(gateway, documented):
    for route, operation in documented.items():
        expected = {
            f"method.request.{LOCATIONS[p['in']]}.{p['name']}" for p in operation["parameters"] if p["in"] != "path"
        }
        assert set(gateway[route].get("RequestParameters", {})) == expected, route


def _body_schema(component: str, components: dict[str, Any]) -> dict[str, Any]:
    """A component as one JSON Schema again: what it refers to, transitively, back under $defs."""
    reachable, pending = set(), [component]
    while pending:
        name = pending.pop()
        if name not in reachable:
            reachable.add(name)
            pending += COMPONENT_REF.findall(json.dumps(components[name]))
    text = json.dumps({**components[component], "$defs": {n: components[n] for n in reachable - {component}}})
    return json.loads(text.replace('"#/components/schemas/', '"#/$defs/'))


def test_the_same_request_schema(synth, gateway, documented):
    components = openapi_document()["components"]["schemas"]
    models = {logical_id: model["Properties"] for logical_id, model in synth.of_type("AWS::ApiGateway::Model").items()}
    bodies = {route: op["requestBody"] for route, op in documented.items() if "requestBody" in op}
    assert list(bodies) == [("POST", "/experiments")]
    for route, body in bodies.items():
        (content_type,) = body["content"]
        component = body["content"][content_type]["schema"]["$ref"].removeprefix("#/components/schemas/")
        model = models[gateway[route]["RequestModels"][content_type]["Ref"]]
        assert model["Name"] == component
        assert model["Schema"] == to_draft4(_body_schema(component, components))
        assert "RequestValidatorId" in gateway[route]
    assert not [route for route, method in gateway.items() if "RequestModels" in method and route not in bodies]
