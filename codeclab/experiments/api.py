"""The HTTP API's behaviour, independent of API Gateway: submit, get, list and cancel.

Every bad input is an ApiError with a 4xx status and a message naming what to fix;
nothing here returns a 5xx for anything a caller sent.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NotRequired, TypedDict, cast

from codeclab.experiments.codec_package import FileManifestSource
from codeclab.experiments.ids import experiment_id_for, is_experiment_id, new_experiment_id
from codeclab.experiments.record import ExperimentRecord
from codeclab.experiments.schema import SpecError, parse_spec_json
from codeclab.experiments.services import Services
from codeclab.experiments.spec import validate_spec
from codeclab.experiments.statuses import Status, TransitionError
from codeclab.experiments.store import ExperimentKey, PageKey
from codeclab.experiments.test_sets import ClipCatalog, FileCatalog

MAX_PAGE = 100


class Submitted(TypedDict):
    experiment_id: str
    execution_arn: str
    status_url: str


class Page(TypedDict):
    items: list[ExperimentRecord]
    next_token: str | None  # give it back to get the next page; None on the last


class CancelRequested(TypedDict):
    experiment_id: str
    status: str  # the status when the cancel was asked for; Reconcile then makes it ABORTED
    cancel_requested: bool


class ErrorDetail(TypedDict):
    path: str
    message: str


class ErrorBody(TypedDict):
    message: str
    errors: NotRequired[list[ErrorDetail]]


@dataclass
class ApiError(Exception):
    status: int
    message: str
    details: list[ErrorDetail] | None = None

    def body(self) -> ErrorBody:
        body: ErrorBody = {"message": self.message}
        if self.details:
            body["errors"] = self.details
        return body


# Step Functions takes 256 KiB of input, and the spec is stored again, with its defaults, in a 400 KB
# DynamoDB item: half of the first leaves room for both.
MAX_SPEC_BYTES = 128 * 1024


def submit(body: str | None, idempotency_key: str | None, services: Services) -> Submitted:
    """Validate and start one experiment; the execution is named after the experiment id."""
    spec = _parse_spec(body, FileCatalog(services.s3), services)
    if idempotency_key is not None and not 1 <= len(idempotency_key) <= 128:
        raise ApiError(400, "Idempotency-Key must be 1 to 128 characters")
    experiment_id = experiment_id_for(idempotency_key) if idempotency_key else new_experiment_id()
    execution_arn = _execution_arn(services.state_machine_arn, experiment_id)
    try:
        services.sfn.start_execution(
            stateMachineArn=services.state_machine_arn, name=experiment_id, input=json.dumps({"spec": spec})
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


def list_by_status(params: Mapping[str, str], services: Services) -> Page:
    status = _status_param(params.get("status"))
    limit = _limit_param(params.get("limit"))
    start = _decode_token(params["next_token"], status) if params.get("next_token") else None
    items, last = services.store.list_by_status(status, limit, start)
    return {"items": items, "next_token": _encode_token(last) if last else None}


def cancel(experiment_id: str, services: Services) -> CancelRequested:
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


def _abort_record(item: ExperimentRecord, services: Services) -> CancelRequested:
    error = {"type": "ABORTED", "message": "cancelled through the API before its execution existed", "cause": ""}
    try:
        item = services.store.transition(ExperimentKey.of(item), Status.ABORTED, error=error)
    except TransitionError as exc:
        raise ApiError(409, str(exc)) from None
    return {"experiment_id": item["experiment_id"], "status": item["status"], "cancel_requested": True}


def _parse_spec(body: str | None, catalog: ClipCatalog, services: Services) -> object:
    """The body's spec as the caller wrote it, once it has passed every check: the execution starts with that.

    A test set's folder or manifest is read here too, so a bad one is a 400 and not a failed execution; so is a
    codec package's codec.json (only under the artifact bucket's codecs/ prefix), to check its params.
    """
    if not body:
        raise ApiError(400, "the request body must be an experiment spec (JSON)")
    try:
        submitted = parse_spec_json(body, origin="spec")
        _refuse_oversized(submitted)  # before the checks, which a huge inline test set would make slow
        packages = FileManifestSource(services.s3)
        validate_spec(
            submitted,
            origin="spec",
            catalog=catalog,
            packages=packages,
            package_bucket=services.bucket,
            local_packages=services.local_packages,
            codec_caps=services.codec_caps,
        )
        return submitted
    except SpecError as exc:
        details: list[ErrorDetail] = [{"path": p.path, "message": p.message} for p in exc.problems]
        raise ApiError(400, str(exc), details) from None


def _refuse_oversized(spec: object) -> None:
    size = len(json.dumps({"spec": spec}).encode("utf-8"))  # as the execution's input will be
    if size > MAX_SPEC_BYTES:
        raise ApiError(
            400,
            f"the spec is {size} bytes; at most {MAX_SPEC_BYTES} go into an execution and its record: "
            "name a large test set by a manifest (.json or .csv) or a folder in source.test_set",
        )


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


def _encode_token(key: PageKey) -> str:
    return base64.urlsafe_b64encode(json.dumps(key, sort_keys=True).encode()).decode()


def _decode_token(token: str, status: Status) -> PageKey:
    try:
        key = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise ApiError(400, "next_token is not one this API issued") from None
    if not _is_page_key(key, status):
        raise ApiError(400, "next_token is not one this API issued")
    return cast(PageKey, key)


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
