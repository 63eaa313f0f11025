"""Synthesizing the app for tests, and reading what came out."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from aws_cdk import App
from aws_cdk.assertions import Template

from app import build_app
from stacks.codeclab_stack import CodeclabStack


@dataclass(frozen=True)
class Synthesized:
    app: App
    stack: CodeclabStack
    template: Template
    outdir: Path

    @cached_property
    def resources(self) -> dict[str, dict[str, Any]]:
        return self.template.to_json()["Resources"]

    def of_type(self, cfn_type: str) -> dict[str, dict[str, Any]]:
        return {k: r for k, r in self.resources.items() if r["Type"] == cfn_type}

    def only(self, cfn_type: str) -> tuple[str, dict[str, Any]]:
        (found,) = self.of_type(cfn_type).items()
        return found

    def logical_id(self, construct: Any) -> str:
        return self.stack.resolve(construct.node.default_child.logical_id)


def synthesize(outdir: Path, context: dict[str, Any] | None = None) -> Synthesized:
    app, stack = build_app(context=context, outdir=str(outdir))
    app.synth()
    return Synthesized(app, stack, Template.from_stack(stack), outdir)
