"""CreateRecord: validate the spec, put the QUEUED item, stage spec.json for the Batch job."""

from __future__ import annotations

from aws_lambda_powertools.utilities.typing import LambdaContext
from observability import count, logger, observed

from codeclab.experiments.services import Services
from codeclab.experiments.state import CreateRecordEvent, PointRecord, SweepRecord
from codeclab.experiments.workflow_steps import create_record

services = Services.from_environment()


@observed()
def handler(event: CreateRecordEvent, context: LambdaContext) -> PointRecord | SweepRecord:
    record = create_record(event, services)
    logger.set_correlation_id(record["experiment_id"])
    logger.info("experiment queued", extra={"record_created": record["created"], "codec": record["codec"]})
    if record["created"]:
        count("Started", record["codec"])
    return record
