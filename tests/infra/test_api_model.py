"""The spec schema converted to API Gateway's draft-04 model: still a schema, and it accepts and rejects sensibly."""

from __future__ import annotations

import copy
import json

import pytest
from jsonschema import Draft4Validator

from codeclab.experiments.api_contract import SPEC_COMPONENT
from stacks.api_model import DRAFT_04, request_models, to_draft4
from stacks.compute import REPO

EXAMPLES = [*sorted((REPO / "examples").glob("*.json")), REPO / "codeclab" / "demo-sweep.json"]
MINIMAL = {
    "name": "carphone-x264-crf28",
    "source": {"clip": "builtin:carphone", "frames": 32},
    "codec": {"name": "x264", "params": {"crf": 28, "preset": "medium"}},
    "limits": {"timeout_seconds": 900, "stall_seconds": 120},
}


@pytest.fixture(scope="module")
def validator() -> Draft4Validator:
    schema = request_models()[SPEC_COMPONENT]
    Draft4Validator.check_schema(schema)
    return Draft4Validator(schema)


def keywords(node: object) -> set[str]:
    """Every key anywhere in the document."""
    if isinstance(node, dict):
        return set(node) | {k for v in node.values() for k in keywords(v)}
    if isinstance(node, list):
        return {k for v in node for k in keywords(v)}
    return set()


def errors(validator: Draft4Validator, spec: dict) -> list[str]:
    return [e.message for e in validator.iter_errors(spec)]


def test_output_is_draft4_without_2020_12_keywords():
    schema = request_models()[SPEC_COMPONENT]
    assert schema["$schema"] == DRAFT_04
    assert not keywords(schema) & {"$defs", "$id", "prefixItems", "if", "then", "const", "x-rate-control"}
    assert "#/$defs/" not in json.dumps(schema)
    assert schema["properties"]["name"]["description"]  # descriptions survive


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_examples_pass(validator, example):
    assert errors(validator, json.loads(example.read_text())) == []


def test_minimal_spec_passes_and_missing_name_fails(validator):
    assert errors(validator, MINIMAL) == []
    nameless = {k: v for k, v in MINIMAL.items() if k != "name"}
    assert errors(validator, nameless) == ["'name' is a required property"]


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("source", "fps"), 0),  # exclusiveMinimum 0
        (("source", "crop"), [0, 0, 15, 16]),  # tuple items: width at least 16
        (("source", "size"), [176, 145]),  # even sizes only
        (("codec", "name"), "h266"),
        (("limits", "timeout_seconds"), 5),
        (("surprise",), True),  # additionalProperties false
    ],
)
def test_bad_values_fail(validator, path, value):
    spec = copy.deepcopy(MINIMAL)
    target = spec
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    assert errors(validator, spec)


def test_conversion_rules():
    converted = to_draft4(
        {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": "https://example.test/x",
            "type": "object",
            "properties": {
                "if": {"const": 1},  # a property named like a keyword stays a property
                "pair": {"type": "array", "prefixItems": [{"type": "integer"}], "items": {"type": "string"}},
                "rate": {"type": "number", "exclusiveMinimum": 0},
                "ref": {"$ref": "#/$defs/thing"},
            },
            "allOf": [{"if": {"required": ["if"]}, "then": {"required": ["pair"]}}],
            "$defs": {"thing": {"type": "string", "x-note": "dropped", "default": "a"}},
        }
    )
    assert converted == {
        "$schema": DRAFT_04,
        "type": "object",
        "properties": {
            "if": {"enum": [1]},
            "pair": {"type": "array", "items": [{"type": "integer"}], "additionalItems": {"type": "string"}},
            "rate": {"type": "number", "minimum": 0, "exclusiveMinimum": True},
            "ref": {"$ref": "#/definitions/thing"},
        },
        "definitions": {"thing": {"type": "string"}},
    }
