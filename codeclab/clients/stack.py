"""A deployed stack's client (`--stack NAME`): the API's own logic, run here with this caller's AWS credentials.

The stack is found by its CloudFormation name; its outputs become the same Services the Lambdas use.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import boto3
from botocore.exceptions import ClientError

from codeclab.clients.base import (
    Cancellation,
    Listing,
    Reason,
    RecordSummary,
    Refused,
    Submission,
    follow,
    spec_body,
)
from codeclab.experiments import api
from codeclab.experiments.limits import CODEC_CAPS_OUTPUT, CodecCaps, codec_caps
from codeclab.experiments.record import ExperimentRecord
from codeclab.experiments.services import Services
from codeclab.experiments.spec import Spec
from codeclab.experiments.statuses import Status
from codeclab.experiments.store import ExperimentStore
from codeclab.experiments.sweep_progress import point_rows, sweep_progress
from codeclab.experiments.workflow_steps import read_manifest

if TYPE_CHECKING:
    from codeclab.clients.base import ProgressCallback

REQUIRED_OUTPUTS = frozenset({"TableName", "ArtifactBucketName", "StateMachineArn"})


def connect(stack_name: str) -> StackClient:
    """The client of the stack of this name in the caller's account and region; Refused UNAVAILABLE if none."""
    cloudformation = boto3.client("cloudformation")
    answered_by = f"stack {stack_name} ({cloudformation.meta.region_name})"
    try:
        (stack,) = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as exc:
        message = f"no stack {stack_name!r} in this account and region: {exc}"
        raise Refused(Reason.UNAVAILABLE, message, answered_by) from None
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    missing = REQUIRED_OUTPUTS - set(outputs)
    if missing:
        message = f"stack {stack_name!r} lacks the outputs {sorted(missing)}: is it a codeclab stack?"
        raise Refused(Reason.UNAVAILABLE, message, answered_by)
    services = Services(
        store=ExperimentStore(outputs["TableName"]),
        bucket=outputs["ArtifactBucketName"],
        state_machine_arn=outputs["StateMachineArn"],
        alert_topic_arn=outputs.get("AlertTopicArn", ""),
        codec_caps=_codec_caps(outputs, answered_by),
    )
    return StackClient(services, answered_by)


def _codec_caps(outputs: dict[str, str], answered_by: str) -> CodecCaps | None:
    """The stack's caps on limits.codec, checked here before anything starts; None from a stack deployed before it
    published them (its CreateRecord and worker check them)."""
    published = outputs.get(CODEC_CAPS_OUTPUT)
    if published is None:
        return None
    try:
        return codec_caps(json.loads(published))
    except (ValueError, AttributeError) as exc:
        message = f"the stack's {CODEC_CAPS_OUTPUT} output is not its caps ({exc}); redeploy it"
        raise Refused(Reason.UNAVAILABLE, message, answered_by) from None


class StackClient:
    def __init__(self, services: Services, answered_by: str) -> None:
        self.services = services
        self._answered_by = answered_by

    @property
    def recovered(self) -> tuple[str, ...]:
        return ()  # on AWS, Reconcile finalises what a lost execution left

    def submit(self, spec: Spec, idempotency_key: str | None = None) -> Submission:
        with self._refusals():
            accepted = api.submit(spec_body(spec), idempotency_key, self.services)
        return Submission.of(accepted, self._answered_by)

    def get(self, experiment_id: str) -> RecordSummary:
        with self._refusals():
            return self._summary(api.get(experiment_id, self.services))

    def cancel(self, experiment_id: str) -> Cancellation:
        with self._refusals():
            return Cancellation.of(api.cancel(experiment_id, self.services), self._answered_by)

    def wait(self, submission: Submission, on_progress: ProgressCallback | None = None) -> RecordSummary:
        return self._summary(follow(lambda: self._current(submission), on_progress))

    def list(self, status: Status | None = None) -> Listing:
        if status is None:
            message = "on AWS the listing goes through the status index: give --status"
            raise Refused(Reason.INVALID, message, self._answered_by)
        records, _ = self.services.store.list_by_status(status)
        return Listing(tuple(records), self._answered_by)

    def _summary(self, record: ExperimentRecord) -> RecordSummary:
        if "manifest_uri" not in record:
            return RecordSummary(record, (), self._answered_by)
        store = self.services.store
        records = list(store.points_of(record["experiment_id"]))  # the parent index, a page at a time
        points = point_rows(record, read_manifest(self.services, record["manifest_uri"]), records)
        progress = sweep_progress(record, records, store.now_ms())
        return RecordSummary(record, tuple(points), self._answered_by, progress)

    def _current(self, submission: Submission) -> ExperimentRecord | None:
        """The record (a sweep's with its points' progress); None until CreateRecord has written it,
        Refused if the execution ended without one."""
        record = self.services.store.find(submission.experiment_id)
        if record is not None and "point_count" in record:  # final too: the bar ends with every point done
            store = self.services.store
            progress = sweep_progress(record, store.point_statuses(record["experiment_id"]), store.now_ms())
            return {**record, "progress": progress.as_record_progress(store.now_ms())}
        if record is None:
            execution = self.services.sfn.describe_execution(executionArn=submission.execution_arn)
            if execution["status"] != "RUNNING":
                message = f"{submission.experiment_id}: its execution ended {execution['status']} with no record"
                raise Refused(Reason.NOT_FOUND, message, self._answered_by)
        return record

    @contextmanager
    def _refusals(self) -> Iterator[None]:
        """The API's errors, as the one refusal every backend raises."""
        try:
            yield
        except api.ApiError as exc:
            raise Refused(Reason.of_status(exc.status), exc.message, self._answered_by) from None
