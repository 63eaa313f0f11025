"""The REST API behind API Gateway (AWS_IAM on every method): submit, get, list, cancel."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.utilities.typing import LambdaContext
from observability import observed

from codeclab.experiments import api
from codeclab.experiments.services import Services

services = Services.from_environment()
app = APIGatewayRestResolver()


def _json(status: int, body: Mapping[str, object]) -> Response:
    return Response(status_code=status, content_type="application/json", body=json.dumps(body, default=str))


@app.post("/experiments")
def submit() -> Response:
    event = app.current_event
    key = event.headers.get("Idempotency-Key")  # Powertools headers are case-insensitive
    return _json(202, api.submit(event.body, key, services))


@app.get("/experiments")
def list_experiments() -> Response:
    return _json(200, api.list_by_status(app.current_event.query_string_parameters or {}, services))


@app.get("/experiments/<experiment_id>")
def get(experiment_id: str) -> Response:
    return _json(200, api.get(experiment_id, services))


@app.post("/experiments/<experiment_id>/cancel")
def cancel(experiment_id: str) -> Response:
    return _json(202, api.cancel(experiment_id, services))


@app.exception_handler(api.ApiError)
def api_error(error: api.ApiError) -> Response:
    return _json(error.status, error.body())


@observed("requestContext.requestId")
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
