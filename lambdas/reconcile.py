"""Reconcile: an execution ended FAILED, TIMED_OUT or ABORTED; make sure its record is final too."""

from __future__ import annotations

from aws_lambda_powertools.utilities.typing import LambdaContext
from observability import count, logger, observed

from codeclab.experiments.services import Services
from codeclab.experiments.state import ReconcileEvent, ReconcileOutcome
from codeclab.experiments.workflow_steps import reconcile

services = Services.from_environment()


@observed("detail.name")
def handler(event: ReconcileEvent, context: LambdaContext) -> ReconcileOutcome:
    outcome = reconcile(event, services)
    logger.info("reconciled", extra={"outcome": outcome})
    if outcome["changed"]:
        count("Failed", outcome["codec"])
    return outcome
