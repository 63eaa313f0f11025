"""cdk-nag acknowledgements: one place that spells rule and finding ids, so each call site states only its reason."""

from __future__ import annotations

import json
from typing import Any

from aws_cdk import Acknowledgment, Stack, Validations
from constructs import IConstruct

PACK = "AwsSolutions"


def acknowledge(scope: IConstruct, rule: str, reason: str, finding: str | None = None) -> None:
    """Acknowledge AwsSolutions-<rule> (or one finding of it) on scope and everything below it.

    The pack-qualified id (`AwsSolutions::...`) lets CDK list the finding as acknowledged, with its
    reason, in the cloud assembly's validation report, so the audit trail survives synthesis.
    """
    rule_id = f"{PACK}-{rule}" + (f"[{finding}]" if finding else "")
    Validations.of(scope).acknowledge(Acknowledgment(id=f"{PACK}::{rule_id}", reason=reason))


def resource_finding(scope: IConstruct, resource: str) -> str:
    """The IAM5 finding id of a wildcard resource, spelled the way cdk-nag flattens it (`<Logical.Attr>`, ...)."""
    return f"Resource::{_flatten(Stack.of(scope).resolve(resource))}"


def _flatten(node: Any) -> str:
    # A port of cdk-nag's flattenCfnReference.
    if isinstance(node, str):
        return node.replace("${", "<").replace("}", ">")
    if isinstance(node, dict) and "Fn::Join" in node:
        delimiter, items = node["Fn::Join"]
        return delimiter.join(_flatten(item) for item in items)
    if isinstance(node, dict) and "Fn::GetAtt" in node:
        resource, attribute = node["Fn::GetAtt"]
        return f"<{_flatten(resource)}.{_flatten(attribute)}>"
    if isinstance(node, dict) and "Ref" in node:
        return f"<{_flatten(node['Ref'])}>"
    return json.dumps(node, separators=(",", ":"))
