"""AggregateSweep: after the Map, collect the points' final statuses into the sweep and finalise it."""

from __future__ import annotations

from aws_lambda_powertools.utilities.typing import LambdaContext
from observability import count, logger, observed

from codeclab.experiments.services import Services
from codeclab.experiments.state import AggregateSweepEvent, StepOutcome
from codeclab.experiments.workflow_steps import aggregate_sweep

services = Services.from_environment()


@observed("experiment_id")
def handler(event: AggregateSweepEvent, context: LambdaContext) -> StepOutcome:
    outcome = aggregate_sweep(event, services)  # raises SweepPointsFailed when a point did not succeed
    logger.info("sweep aggregated", extra={"outcome": outcome})
    count("Succeeded", outcome["codec"])
    return outcome
