"""The HTTP API's behaviour, independent of API Gateway: submit, get, list and cancel.

Every bad input is an ApiError with a 4xx status and a message naming what to fix;
nothing here returns a 5xx for anything a caller sent.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from codeclab.experiments.ids import experiment_id_for, is_experiment_id, new_experiment_id
from codeclab.experiments.schema import SpecError
from codeclab.experiments.record import ExperimentRecord
from codeclab.experiments.services import Services
from codeclab.experiments.spec import Spec, read_spec
from codeclab.experiments.statuses import Status, TransitionError
from codeclab.experiments.store import ExperimentKey

MAX_PAGE = 100


@dataclass
class ApiError(Exception):
    status: int
    message: str
    details: list[dict[str, str]] | None = None

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"message": self.message}
        if self.details:
            body["errors"] = self.details
        return body


def submit(body: str | None, idempotency_key: str | None, services: Services) -> dict[str, Any]:
    """Validate and start one experiment; the execution is named after the experiment id."""
    spec = _parse_spec(body)
    if idempotency_key is not None and not 1 <= len(idempotency_key) <= 128:
        raise ApiError(400, "Idempotency-Key must be 1 to 128 characters")
    experiment_id = experiment_id_for(idempotency_key) if idempotency_key else new_experiment_id()
    execution_arn = _execution_arn(services.state_machine_arn, experiment_id)
    try:
        services.sfn.start_execution(
            stateMachineArn=services.state_machine_arn, name=experiment_id, input=json.dumps({"spec": spec.document})
        )
    except services.sfn.exceptions.ExecutionAlreadyExists:
        if not idempotency_key:
            raise
        # a retried POST: the first one already started this experiment
    return {
        "experiment_id": experiment_id,
        "execution_arn": execution_arn,
        "status_url": f"/experiments/{experiment_id}",
    }


def get(experiment_id: str, services: Services) -> ExperimentRecord:
    item = services.store.find(experiment_id) if is_experiment_id(experiment_id) else None
    if item is None:
        raise ApiError(404, f"no experiment {experiment_id!r}")
    return item


def list_by_status(params: dict[str, str], services: Services) -> dict[str, Any]:
    status = _status_param(params.get("status"))
    limit = _limit_param(params.get("limit"))
    start = _decode_token(params["next_token"], status) if params.get("next_token") else None
    items, last = services.store.list_by_status(status, limit, start)
    return {"items": items, "next_token": _encode_token(last) if last else None}


def cancel(experiment_id: str, services: Services) -> dict[str, Any]:
    """Stop the execution; Reconcile then marks the experiment ABORTED and sends its one alert."""
    item = get(experiment_id, services)
    if Status(item["status"]).is_final:
        raise ApiError(409, f"{experiment_id} already ended as {item['status']}")
    try:
        services.sfn.stop_execution(
            executionArn=item["execution_arn"], error="ABORTED", cause="cancelled through the API"
        )
    except services.sfn.exceptions.ExecutionDoesNotExist:
        return _abort_record(item, services)  # no execution, so no status change will reach Reconcile
    return {"experiment_id": experiment_id, "status": item["status"], "cancel_requested": True}


def _abort_record(item: ExperimentRecord, services: Services) -> dict[str, Any]:
    error = {"type": "ABORTED", "message": "cancelled through the API before its execution existed", "cause": ""}
    try:
        item = services.store.transition(ExperimentKey.of(item), Status.ABORTED, error=error)
    except TransitionError as exc:
        raise ApiError(409, str(exc)) from None
    return {"experiment_id": item["experiment_id"], "status": item["status"], "cancel_requested": True}


def _parse_spec(body: str | None) -> Spec:
    if not body:
        raise ApiError(400, "the request body must be an experiment spec (JSON)")
    try:
        return read_spec(body, origin="spec")
    except SpecError as exc:
        details = [{"path": p.path, "message": p.message} for p in exc.problems]
        raise ApiError(400, str(exc), details) from None


def _execution_arn(state_machine_arn: str, name: str) -> str:
    return state_machine_arn.replace(":stateMachine:", ":execution:") + f":{name}"


def _status_param(value: str | None) -> Status:
    try:
        return Status(value or "")
    except ValueError:
        raise ApiError(400, f"status must be one of {', '.join(s.value for s in Status)}") from None


def _limit_param(value: str | None) -> int:
    if value is None:
        return 50
    # ASCII digits only: str.isdigit() also takes '²', which int() then refuses with a ValueError (a 500)
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= MAX_PAGE:
        raise ApiError(400, f"limit must be an integer from 1 to {MAX_PAGE}")
    return int(value)


def _encode_token(key: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(key, sort_keys=True).encode()).decode()


def _decode_token(token: str, status: Status) -> dict[str, Any]:
    try:
        key = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise ApiError(400, "next_token is not one this API issued") from None
    if not _is_page_key(key, status):
        raise ApiError(400, "next_token is not one this API issued")
    return key


def _is_page_key(key: Any, status: Status) -> bool:
    """A key this status's pages end on; DynamoDB refuses any other start key, which would be a 500."""
    if not isinstance(key, dict) or set(key) != {"experiment_id", "timestamp", "status"}:
        return False
    timestamp = key["timestamp"]
    return (
        is_experiment_id(key["experiment_id"])
        and isinstance(timestamp, int)
        and not isinstance(timestamp, bool)
        and 0 <= timestamp < 2**63
        and key["status"] == status.value
    )
