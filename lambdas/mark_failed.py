"""MarkFailed: after a Catch, finalise the experiment as FAILED or TIMED_OUT with its error type."""

from __future__ import annotations

from aws_lambda_powertools.utilities.typing import LambdaContext
from observability import count, logger, observed

from codeclab.experiments.services import Services
from codeclab.experiments.state import FailureOutcome, MarkFailedEvent
from codeclab.experiments.workflow_steps import mark_failed

services = Services.from_environment()


@observed("input.record.experiment_id")
def handler(event: MarkFailedEvent, context: LambdaContext) -> FailureOutcome:
    outcome = mark_failed(event, services)
    logger.warning("experiment failed", extra={"outcome": outcome})
    count("Failed", outcome["codec"])
    return outcome
