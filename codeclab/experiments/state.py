"""The workflow's state payload and the events of its Lambda steps: one typed shape for each.

The Lambda steps produce and read these; stacks/workflow.py builds every JSONPath and every task payload
from their field names through `state_path` and `event_payload`, so a renamed field fails at synth, not
in a running execution.
"""

from __future__ import annotations

import types
from typing import Any, Literal, NotRequired, TypedDict, Union, get_args, get_origin, get_type_hints, is_typeddict


class PointRecord(TypedDict):
    """CreateRecord's output for one experiment (or one point of a sweep): everything its job needs."""

    experiment_id: str
    timestamp: int
    created: bool
    sweep: Literal[False]
    codec: str
    timeout_seconds: int  # Batch's attempt duration
    run_timeout_seconds: int  # the RunCodec state's own limit: queueing plus the attempt
    stall_seconds: int
    artifact_prefix: str
    spec_uri: str
    result_uri: str
    job_name: str
    command: list[str]
    notify_on_success: bool


MANIFEST_FILE = "points.json"  # a sweep's points manifest: experiments/<sweep id>/points.json, and in runs/


class ManifestLocation(TypedDict):
    """Where a sweep's points manifest lies: the Distributed Map's ItemReader reads it from S3."""

    Bucket: str
    Key: str


class ManifestPoint(TypedDict):
    """One item of a sweep's points manifest: what the point's child execution starts from."""

    parent_id: str
    execution_arn: str  # the sweep's execution: cancelling the point stops its sweep, as for an inline point
    experiment_id: str  # derived from the parent's (sweep.point_id), so it is known before the record exists
    index: int
    label: str
    spec: Any  # the point's checked single-experiment SpecDocument


class SweepRecord(TypedDict):
    """CreateRecord's output for a sweep: a pointer to its points manifest, not the points."""

    experiment_id: str
    timestamp: int
    created: bool
    sweep: Literal[True]
    codec: Literal["sweep"]
    points: int
    manifest: ManifestLocation
    max_concurrency: int  # the spec's, bounded by the compute environment
    notify_on_success: bool


class JobOutcome(TypedDict):
    """What RunCodec keeps of Batch's DescribeJobs answer (its ResultSelector)."""

    JobId: str
    JobName: str
    Status: str
    StatusReason: str


class StepOutcome(TypedDict):
    """RecordResult's and AggregateSweep's output."""

    status: str
    summary: str  # the success notification's text
    codec: str


class Alert(TypedDict):
    alert_subject: str  # SNS allows 100 characters
    alert_message: str  # JSON


class FailureOutcome(Alert):
    """MarkFailed's output: the final status and the alert to publish."""

    experiment_id: str
    codec: str | None
    status: str
    error_type: str
    message: str


class CaughtError(TypedDict):
    """What a Catch puts at its ResultPath."""

    Error: str
    Cause: str


class ExecutionState(TypedDict):
    """The payload of one execution, as it grows from state to state."""

    spec: NotRequired[Any]  # the execution input's spec, as submitted
    record: NotRequired[PointRecord | SweepRecord]
    job: NotRequired[JobOutcome]
    result: NotRequired[StepOutcome]
    failure: NotRequired[FailureOutcome]
    error: NotRequired[CaughtError]
    mark_failed_error: NotRequired[CaughtError]
    alert_error: NotRequired[CaughtError]


class PointState(TypedDict):
    """The payload of one child execution of a sweep's Map (which starts from its manifest `point` and gets its
    record from CreatePoint), and of a single experiment's run: its record is a point."""

    point: NotRequired[ManifestPoint]
    record: NotRequired[PointRecord]
    job: NotRequired[JobOutcome]
    result: NotRequired[StepOutcome]
    failure: NotRequired[FailureOutcome]
    error: NotRequired[CaughtError]
    mark_failed_error: NotRequired[CaughtError]


# -- the Lambda steps' events -------------------------------------------------------------------------------
class CreateRecordEvent(TypedDict):
    input: Any  # the execution input: {"spec": ...} from the API, or a bare spec from the console
    execution_arn: str
    execution_name: str


class CreatePointEvent(TypedDict):
    point: ManifestPoint


class RecordResultEvent(TypedDict):
    experiment_id: str
    timestamp: int
    result_uri: str
    job_id: str


class AggregateSweepEvent(TypedDict):
    experiment_id: str
    timestamp: int


class MarkFailedEvent(TypedDict):
    input: ExecutionState | PointState  # whatever the state held when its Catch fired
    execution_arn: str


class ExecutionStatusChange(TypedDict, total=False):
    """The detail of EventBridge's "Step Functions Execution Status Change" event, as far as Reconcile reads it."""

    executionArn: str
    name: str
    status: str
    input: str | None  # the execution input as JSON text
    error: str | None
    cause: str | None


class ReconcileEvent(TypedDict):
    detail: ExecutionStatusChange


class ReconcileOutcome(TypedDict):
    experiment_id: str
    status: str
    changed: bool
    codec: str | None


class StateFieldError(KeyError):
    """A JSONPath or payload names a field the typed state does not have."""


def state_path(*fields: str, state: type = ExecutionState) -> str:
    """ "$.a.b" for fields a, b of `state`, checked field by field (through unions, e.g. a point or a sweep)."""
    node: object = state
    for depth, name in enumerate(fields):
        node = _field_type(node, name, fields[:depth])
    return "$." + ".".join(fields)


def state_field(name: str, state: type = ExecutionState) -> str:
    """`name`, checked to be a top-level field of `state`: for payload keys that are not paths."""
    _field_type(state, name, ())
    return name


def event_payload(event: type, **paths: str) -> dict[str, str]:
    """A Lambda task's Parameters: each field of `event` taken from a JSONPath; every field, and no others."""
    fields = set(get_type_hints(event))
    if set(paths) != fields:
        raise StateFieldError(f"{event.__name__} has fields {sorted(fields)}; the payload gives {sorted(paths)}")
    return {f"{name}.$": path for name, path in paths.items()}


def _field_type(node: object, name: str, parents: tuple[str, ...]) -> object:
    members = get_args(node) if get_origin(node) in (Union, types.UnionType) else (node,)
    for member in members:
        if is_typeddict(member):
            hints = get_type_hints(member)
            if name in hints:
                return hints[name]
    where = ".".join(("$", *parents))
    raise StateFieldError(f"{where} has no field {name!r} in the typed state ({node})")
