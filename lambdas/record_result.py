"""RecordResult: read the worker's result.json and mark the experiment SUCCEEDED."""

from __future__ import annotations

from aws_lambda_powertools.utilities.typing import LambdaContext
from observability import count, logger, observed

from codeclab.experiments.services import Services
from codeclab.experiments.state import RecordResultEvent, StepOutcome
from codeclab.experiments.workflow_steps import record_result

services = Services.from_environment()


@observed("experiment_id")
def handler(event: RecordResultEvent, context: LambdaContext) -> StepOutcome:
    outcome = record_result(event, services)
    logger.info("result recorded", extra={"outcome": outcome})
    if outcome["status"] == "SUCCEEDED":
        count("Succeeded", outcome["codec"])
    return outcome
