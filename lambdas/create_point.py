"""CreatePoint: a sweep point's first step in its child execution: its QUEUED record and spec.json."""

from __future__ import annotations

from aws_lambda_powertools.utilities.typing import LambdaContext
from observability import logger, observed

from codeclab.experiments.services import Services
from codeclab.experiments.state import CreatePointEvent, PointRecord
from codeclab.experiments.workflow_steps import create_point

services = Services.from_environment()


@observed()
def handler(event: CreatePointEvent, context: LambdaContext) -> PointRecord:
    record = create_point(event, services)  # raises SweepAlreadyEnded for a child that started too late
    logger.set_correlation_id(record["experiment_id"])
    logger.info("point queued", extra={"record_created": record["created"], "codec": record["codec"]})
    return record
