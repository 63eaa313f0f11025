"""The API contract's request schemas (JSON Schema 2020-12) as API Gateway models, in its draft-04 subset.

The spec's model is a first gate that turns away malformed bodies before any Lambda runs. It is a little looser
than the source: draft-04 cannot say "if the codec is x264 then its params are...", so those conditionals are
dropped, and CreateRecord still validates every spec against the full schema.
"""

from __future__ import annotations

from typing import Any

from codeclab.experiments.api_contract import JsonSchema, request_schemas

DRAFT_04 = "http://json-schema.org/draft-04/schema#"
# 2020-12 keywords with no draft-04 meaning, conditionals API Gateway cannot evaluate, and defaults,
# which a validator ignores (CreateRecord fills them in).
DROPPED = frozenset(
    {
        "default",
        "$id",
        "$anchor",
        "$comment",
        "$dynamicAnchor",
        "$dynamicRef",
        "$vocabulary",
        "if",
        "then",
        "else",
        "dependentRequired",
        "dependentSchemas",
        "unevaluatedItems",
        "unevaluatedProperties",
        "contains",
        "minContains",
        "maxContains",
        "propertyNames",
        "examples",
        "deprecated",
        "readOnly",
        "writeOnly",
        "contentEncoding",
        "contentMediaType",
        "contentSchema",
    }
)
# Keywords whose values are data, not subschemas: copied as they are.
LITERAL = frozenset(
    {
        "type",
        "enum",
        "required",
        "title",
        "description",
        "pattern",
        "format",
        "minimum",
        "maximum",
        "multipleOf",
        "minLength",
        "maxLength",
        "minItems",
        "maxItems",
        "uniqueItems",
        "minProperties",
        "maxProperties",
    }
)
# Keywords whose values map names to subschemas.
SCHEMA_MAPS = frozenset({"properties", "patternProperties", "$defs", "definitions"})
SCHEMA_LISTS = frozenset({"allOf", "anyOf", "oneOf", "prefixItems"})


def request_models() -> dict[str, JsonSchema]:
    """Each request body's schema as an API Gateway model, by its component name (the model's name too)."""
    return {name: to_draft4(schema) for name, schema in request_schemas().items()}


def to_draft4(schema: dict[str, Any]) -> dict[str, Any]:
    converted: dict[str, Any] = _schema(schema)
    return {"$schema": DRAFT_04, **{k: v for k, v in converted.items() if k != "$schema"}}


def _schema(node: Any) -> Any:
    """One subschema; a dict that is not a schema keyword map (e.g. a group of $defs) is walked the same way."""
    if node is True:
        return {}
    if node is False:
        return {"not": {}}
    if not isinstance(node, dict):
        return node
    if "prefixItems" in node and "items" in node:  # 2020-12 items after prefixItems means "the rest"
        node = {**{k: v for k, v in node.items() if k != "items"}, "additionalItems": node["items"]}
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in DROPPED or key.startswith("x-"):
            continue
        out.update(_keyword(key, value))
    if "allOf" in out:
        out["allOf"] = [sub for sub in out["allOf"] if sub]  # conditionals dropped leave empty members
        if not out["allOf"]:
            del out["allOf"]
    return out


def _keyword(key: str, value: Any) -> dict[str, Any]:
    """The draft-04 form of one keyword, as the entries it becomes."""
    if key == "$ref":
        return {"$ref": value.replace("#/$defs/", "#/definitions/")}
    if key == "const":
        return {"enum": [value]}
    if key in {"exclusiveMinimum", "exclusiveMaximum"} and not isinstance(value, bool):
        bound = "minimum" if key == "exclusiveMinimum" else "maximum"
        return {bound: value, key: True}  # draft-04 spells an exclusive bound as a flag beside the bound
    if key in LITERAL or (key in {"additionalProperties", "additionalItems"} and isinstance(value, bool)):
        return {key: value}
    if key in SCHEMA_MAPS:
        return {"definitions" if key == "$defs" else key: {name: _schema(sub) for name, sub in value.items()}}
    if key in SCHEMA_LISTS:
        # prefixItems is draft-04's tuple form of items.
        return {"items" if key == "prefixItems" else key: [_schema(sub) for sub in value]}
    return {key: _schema(value)}  # items, additionalItems, additionalProperties, not, and groups of definitions
