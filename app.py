"""The CDK app: `cdk synth` (or `python app.py`) writes the Codeclab stack's template to cdk.out."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from aws_cdk import App, Validations
from cdk_nag import AwsSolutionsChecks

from stacks.codeclab_stack import CodeclabStack

REPO = Path(__file__).resolve().parent
STACK_NAME = "Codeclab"


def default_context() -> dict[str, Any]:
    """cdk.json's context, so `python app.py` and tests see the same defaults and feature flags as the CLI."""
    with (REPO / "cdk.json").open(encoding="utf-8") as fh:
        context: dict[str, Any] = json.load(fh)["context"]
    with (REPO / "cdk.context.json").open(encoding="utf-8") as fh:
        context.update(json.load(fh))
    return context


def build_app(context: dict[str, Any] | None = None, outdir: str | None = None) -> tuple[App, CodeclabStack]:
    # Values given here override cdk.json; values from the CLI (`cdk -c key=value`) override both.
    app = App(context={**default_context(), **(context or {})}, outdir=outdir)
    # Environment-agnostic on purpose: no account or region lookups, so synthesis needs no AWS credentials.
    stack = CodeclabStack(app, STACK_NAME, description="codeclab: neural video codec experiments on GPU AWS Batch")
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return app, stack


if __name__ == "__main__":
    # The CLI sets CDK_OUTDIR; run directly, the assembly goes to cdk.out as it would under `cdk synth`.
    build_app(outdir=os.environ.get("CDK_OUTDIR", str(REPO / "cdk.out")))[0].synth()
