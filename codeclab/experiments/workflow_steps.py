"""What the workflow's Lambda steps do: CreateRecord, CreatePoint, RecordResult, AggregateSweep, MarkFailed, Reconcile.

The handlers in lambdas/ are thin wrappers (logging, tracing, metrics) around these.
"""

from __future__ import annotations

import json
import logging
from typing import Any, cast

from codeclab.experiments.codec_package import FileManifestSource
from codeclab.experiments.error_types import (
    ALERTED_FAILURE,
    Classified,
    ErrorType,
    classify,
    classify_execution_status,
    recorded_type_of_worker_error,
)
from codeclab.experiments.ids import experiment_id_for, is_experiment_id
from codeclab.experiments.limits import job_timeout, run_codec_timeout
from codeclab.experiments.record import ExperimentRecord, SweepCounts
from codeclab.experiments.result import ResultError, measurement, summary_line
from codeclab.experiments.s3_uri import split_s3_uri
from codeclab.experiments.schema import SpecDocument
from codeclab.experiments.services import Services
from codeclab.experiments.spec import Spec, validate_spec
from codeclab.experiments.state import (
    MANIFEST_FILE,
    AggregateSweepEvent,
    Alert,
    CaughtError,
    CreatePointEvent,
    CreateRecordEvent,
    FailureOutcome,
    ManifestPoint,
    MarkFailedEvent,
    PointRecord,
    PointState,
    ReconcileEvent,
    ReconcileOutcome,
    RecordResultEvent,
    StepOutcome,
    SweepRecord,
)
from codeclab.experiments.statuses import Status, TransitionError
from codeclab.experiments.store import ExperimentKey, ExperimentNotFound
from codeclab.experiments.sweep import point_id
from codeclab.experiments.test_sets import FileCatalog

log = logging.getLogger("codeclab.experiments")


class InvalidEventError(ValueError):
    """The step was called with an event it cannot use."""


def experiment_id_of_execution(name: str, arn: str) -> str:
    """Executions started by the API or CLI are named after the experiment; others derive it from the ARN."""
    return name if is_experiment_id(name) else experiment_id_for(arn)


def create_record(event: CreateRecordEvent, services: Services) -> PointRecord | SweepRecord:
    """Validate the spec, create the QUEUED item(s) idempotently, stage spec.json for each job.

    A sweep creates one item per point (with parent_id) and a parent item that lists them.
    """
    execution_input = event.get("input") or {}
    raw_spec = execution_input.get("spec", execution_input)
    spec = validate_spec(
        raw_spec,
        origin="execution input spec",
        catalog=FileCatalog(services.s3),
        packages=FileManifestSource(services.s3),
        codec_caps=services.codec_caps,
    )
    experiment_id = experiment_id_of_execution(event.get("execution_name", ""), event.get("execution_arn", ""))
    execution_arn = event.get("execution_arn", "")
    if spec.is_sweep:
        return _create_sweep(services, experiment_id, spec, execution_arn)
    return _create_point(services, experiment_id, spec.document, execution_arn)


def _create_point(
    services: Services, experiment_id: str, spec: SpecDocument, execution_arn: str, **attributes: Any
) -> PointRecord:
    codec = spec["codec"]["name"]
    job_seconds = job_timeout(spec["limits"]["timeout_seconds"], services.max_timeout_seconds, services.min_job_seconds)
    key, created = services.store.create(experiment_id, spec, execution_arn=execution_arn, codec=codec, **attributes)
    prefix = services.artifact_prefix(experiment_id)
    spec_uri = f"{prefix}/spec.json"
    bucket, spec_key = split_s3_uri(spec_uri)
    services.s3.put_object(Bucket=bucket, Key=spec_key, Body=json.dumps(spec).encode("utf-8"))
    log.info("record %s %s", "created" if created else "already existed", key)
    return {
        "experiment_id": key.experiment_id,
        "timestamp": key.timestamp,
        "created": created,
        "sweep": False,
        "codec": codec,
        "timeout_seconds": job_seconds,
        "run_timeout_seconds": run_codec_timeout(job_seconds, services.runnable_timeout_seconds),
        "stall_seconds": spec["limits"]["stall_seconds"],
        "artifact_prefix": prefix,
        "spec_uri": spec_uri,
        "result_uri": f"{prefix}/result.json",
        "job_name": f"codeclab-{experiment_id}",
        "command": [spec_uri, "--out", prefix],
        "notify_on_success": services.notify_on_success,
    }


def _create_sweep(services: Services, experiment_id: str, spec: Spec, execution_arn: str) -> SweepRecord:
    # The points go into a manifest on S3, not into the table: each point's child execution creates its own
    # record (create_point), so this step makes one S3 write and one item however many points there are.
    # Point ids derive from the parent's, so a retried CreateRecord writes the same manifest again.
    manifest: list[ManifestPoint] = [
        {
            "parent_id": experiment_id,
            "execution_arn": execution_arn,
            "experiment_id": point_id(experiment_id, p.index),
            "index": p.index,
            "label": p.label,
            "spec": p.spec,
        }
        for p in spec.points
    ]
    prefix = services.artifact_prefix(experiment_id)
    manifest_uri = f"{prefix}/{MANIFEST_FILE}"
    bucket, manifest_key = split_s3_uri(manifest_uri)
    services.s3.put_object(Bucket=bucket, Key=manifest_key, Body=json.dumps(manifest).encode("utf-8"))
    key, created = services.store.create(
        experiment_id, spec.document, execution_arn=execution_arn, codec="sweep",
        manifest_uri=manifest_uri, point_count=len(manifest),
    )  # fmt: skip
    try:
        services.store.transition(key, Status.RUNNING)  # every point is in the manifest: the sweep is under way
    except TransitionError as exc:
        log.info("sweep %s already %s", key, exc.current)
    return {
        "experiment_id": key.experiment_id,
        "timestamp": key.timestamp,
        "created": created,
        "sweep": True,
        "codec": "sweep",
        "points": len(manifest),
        "manifest": {"Bucket": bucket, "Key": manifest_key},
        "max_concurrency": min(spec.max_concurrency, services.max_sweep_concurrency),
        "notify_on_success": services.notify_on_success,
    }


class SweepAlreadyEnded(RuntimeError):
    """A point's child execution started after its sweep ended (cancelled, timed out): it runs nothing."""


def create_point(event: CreatePointEvent, services: Services) -> PointRecord:
    """A sweep point's first step in its child execution: its QUEUED record and spec.json, idempotently."""
    point = event["point"]
    parent = services.store.find(point["parent_id"])
    if parent is None:
        raise InvalidEventError(f"point {point['index']} names sweep {point['parent_id']}, which has no record")
    if Status(parent["status"]).is_final:  # a late child must not leave a record that nothing will finalise
        raise SweepAlreadyEnded(f"sweep {point['parent_id']} already ended as {parent['status']}")
    return _create_point(
        services,
        point["experiment_id"],
        point["spec"],
        point["execution_arn"],
        parent_id=point["parent_id"],
        point_label=point["label"],
        point_index=point["index"],
    )


def record_result(event: RecordResultEvent, services: Services) -> StepOutcome:
    """Read the worker's result.json and finalise the item as SUCCEEDED."""
    key = ExperimentKey.of(event)
    try:
        result = services.read_result(event["result_uri"])
    except ResultError as exc:
        raise InvalidEventError(f"{key}: the job finished but {exc}") from None
    if result is None or result["status"] != "SUCCEEDED":
        detail = "missing" if result is None else f"status {result['status']}: {result['error']}"
        raise InvalidEventError(f"{key}: the job finished but result.json is {detail}")
    attributes = {
        "result": measurement(result),
        "conditions": result["conditions"],
        "artifacts": result["artifacts"],
        "job_id": event.get("job_id", ""),
    }
    codec = result["spec"]["codec"]["name"]
    try:
        services.store.transition(key, Status.SUCCEEDED, **attributes)
    except TransitionError as exc:
        if exc.current is not Status.SUCCEEDED:  # e.g. Reconcile already wrote ABORTED: a final status stays
            log.warning("result not recorded: %s", exc)
            return {"status": exc.current.value, "summary": str(exc), "codec": codec}
        log.info("already recorded (an earlier try of this write landed): %s", exc)
    return {
        "status": Status.SUCCEEDED.value,
        "summary": f"{key.experiment_id} {result['name']}: SUCCEEDED, {summary_line(result)}",
        "codec": codec,
    }


class SweepPointsFailed(RuntimeError):
    """Some points of a sweep did not succeed; the workflow's Catch turns this into the sweep's one alert."""


def aggregate_sweep(event: AggregateSweepEvent, services: Services) -> StepOutcome:
    """After the Map: count the points' final statuses from their records (the parent index), and finalise the
    parent with the counts. Each point's result stays in its own record whatever happened to the others."""
    key = ExperimentKey.of(event)
    parent = services.store.get(key)
    if parent is None or "point_count" not in parent:
        raise InvalidEventError(f"{key}: no sweep record to aggregate")
    points = _final_points(services, parent)
    never_started = _never_started(services, parent, {p["point_index"] for p in points})
    failed = [p for p in points if p["status"] != Status.SUCCEEDED]
    total = parent["point_count"]
    counts: SweepCounts = {"points": total, "succeeded": len(points) - len(failed), "failed": len(failed),
                           "not_started": len(never_started)}  # fmt: skip
    if failed or never_started:
        listed = [
            f"{p.get('point_label', '')} ({p['experiment_id']}) {p['status']} {p.get('error', {}).get('type', '')}"
            for p in failed
        ] + [f"{m['label']} ({m['experiment_id']}) never started" for m in never_started]
        message = (
            f"{total - counts['succeeded']} of {total} points did not succeed: {'; '.join(s.strip() for s in listed)}"
        )
        error = {"type": ErrorType.POINTS_FAILED.value, "message": message[:4000], "cause": ""}
        _finalise_sweep(services, key, Status.FAILED, result=counts, error=error)
        raise SweepPointsFailed(message[:4000])
    status = _finalise_sweep(services, key, Status.SUCCEEDED, result=counts)
    summary = f"{key.experiment_id} {parent['spec']['name']}: {status}, {total} of {total} points succeeded"
    return {"status": status, "summary": summary, "codec": "sweep"}


def _final_points(services: Services, parent: ExperimentRecord) -> list[ExperimentRecord]:
    """Every point record of the sweep, each final: one whose own failure handling failed is finalised here."""
    points = []
    for indexed in services.store.points_of(parent["experiment_id"]):
        item = indexed if Status(indexed["status"]).is_final else _current(services, indexed)
        if not Status(item["status"]).is_final:
            classified = Classified(ErrorType.INTERNAL, "the point ended without reaching a final status")
            _finalise(services, item, classified, cause=None)
            item = _current(services, item)
        points.append(item)
    return points


def _current(services: Services, item: ExperimentRecord) -> ExperimentRecord:
    """The table's own item: the parent index may lag a write made a moment ago."""
    return services.store.get(ExperimentKey.of(item)) or item


def _never_started(services: Services, parent: ExperimentRecord, indexed: set[int]) -> list[ManifestPoint]:
    """The manifest's points with no record. The index may lag, so each candidate is looked up in the table."""
    missing = set(range(parent["point_count"])) - indexed
    if not missing:
        return []
    manifest = read_manifest(services, parent["manifest_uri"])
    return [m for m in manifest if m["index"] in missing and services.store.find(m["experiment_id"]) is None]


def read_manifest(services: Services, manifest_uri: str) -> list[ManifestPoint]:
    bucket, key = split_s3_uri(manifest_uri)
    return cast(list[ManifestPoint], json.loads(services.s3.get_object(Bucket=bucket, Key=key)["Body"].read()))


def _finalise_sweep(services: Services, key: ExperimentKey, target: Status, **attributes: Any) -> str:
    try:
        services.store.transition(key, target, **attributes)
    except TransitionError as exc:  # e.g. the sweep was cancelled meanwhile: its final status stays
        log.warning("sweep outcome not recorded: %s", exc)
        return exc.current.value
    return target.value


def _finalise_points(services: Services, parent: ExperimentRecord | None, classified: Classified) -> None:
    """A sweep that ends early (cancelled, timed out) takes its unfinished points with it. Points that never
    got a record have nothing to finalise: the sweep's view counts them as not started."""
    if parent is None or "point_count" not in parent:
        return
    reason = Classified(classified.error_type, f"the sweep ended first: {classified.message}")
    for indexed in services.store.points_of(parent["experiment_id"]):
        if not Status(indexed["status"]).is_final:
            _finalise(services, _current(services, indexed), reason, cause=None)


def mark_failed(event: MarkFailedEvent, services: Services) -> FailureOutcome:
    """Finalise the item after a Catch: FAILED or TIMED_OUT, with the error type and cause."""
    state = event.get("input") or {}
    error: CaughtError = state.get("error") or {"Error": "", "Cause": ""}
    execution_arn = event.get("execution_arn", "")
    record = state.get("record")
    point = cast(PointState, state).get("point")  # a sweep point's child execution: its manifest entry
    item = _item_for(services, record, execution_arn, point)
    if item is None and execution_arn and point is None:  # CreateRecord failed before writing anything
        name = execution_arn.rsplit(":", 1)[-1]
        submitted = state.get("spec", {k: v for k, v in state.items() if k != "error"})
        item = _record_unrecorded(services, experiment_id_of_execution(name, execution_arn), submitted, execution_arn)
    result_uri = record.get("result_uri") if record and not record["sweep"] else None
    classified = _worker_verdict(services, result_uri) or classify(error.get("Error"), error.get("Cause"))
    status = _finalise(services, item, classified, cause=error.get("Cause"))
    _finalise_points(services, item, classified)
    # A point whose CreatePoint failed has no record; AggregateSweep counts it as never started.
    experiment_id = item["experiment_id"] if item else point["experiment_id"] if point else "(no record)"
    return {
        "experiment_id": experiment_id,
        "codec": item.get("codec") if item else None,
        "status": status,
        "error_type": classified.error_type.value,
        "message": classified.message,
        **failure_alert(experiment_id, status, classified, execution_arn),
    }


def reconcile(event: ReconcileEvent, services: Services) -> ReconcileOutcome:
    """EventBridge: an execution ended FAILED, TIMED_OUT or ABORTED; finalise its item if a Catch did not."""
    detail = event.get("detail") or {}
    arn, status = detail.get("executionArn", ""), detail.get("status", "")
    if status not in {"FAILED", "TIMED_OUT", "ABORTED"}:
        raise InvalidEventError(f"reconcile handles ended executions, not status {status!r}")
    experiment_id = experiment_id_of_execution(detail.get("name", ""), arn)
    item = services.store.find(experiment_id)
    if item is None:  # it ended before CreateRecord wrote anything, and no Catch ran
        item = _record_unrecorded(services, experiment_id, _execution_spec(detail.get("input")), arn)
    classified = classify_execution_status(status, detail.get("error"), detail.get("cause"))
    if status == "FAILED":  # the worker's own result.json names a failure more precisely than the execution
        result_uri = f"{services.artifact_prefix(experiment_id)}/result.json"
        classified = _worker_verdict(services, result_uri) or classified
    before = item["status"]
    after = _finalise(services, item, classified, cause=detail.get("cause"))
    _finalise_points(services, item, classified)
    changed = before != after
    # An execution that reached the workflow's Fail state already sent its alert (MarkFailed itself failed)
    if changed and detail.get("error") != ALERTED_FAILURE:  # no Catch ran, so no alert was sent: this is the one
        alert = failure_alert(experiment_id, after, classified, arn)
        services.sns.publish(
            TopicArn=services.alert_topic_arn, Subject=alert["alert_subject"], Message=alert["alert_message"]
        )
    return {"experiment_id": experiment_id, "status": after, "changed": changed, "codec": item.get("codec")}


def _record_unrecorded(services: Services, experiment_id: str, submitted: Any, execution_arn: str) -> ExperimentRecord:
    """Write the record an execution never got, so the experiment its caller was given exists and ends final."""
    codec = submitted.get("codec", {}).get("name") if isinstance(submitted, dict) else None
    key, _ = services.store.create(
        experiment_id, submitted, execution_arn=execution_arn, codec=codec if isinstance(codec, str) else None
    )
    log.warning("execution %s had no record; wrote %s to finalise it", execution_arn, key)
    item = services.store.get(key)
    if item is None:  # just written with a condition that it did not exist: a store that lost it is broken
        raise RuntimeError(f"{key} was written but cannot be read back")
    return item


def _execution_spec(execution_input: str | None) -> Any:
    """The spec an execution was started with (its input, or the input's `spec`), whatever its validity."""
    try:
        parsed = json.loads(execution_input or "{}")
    except json.JSONDecodeError:
        return execution_input
    return parsed.get("spec", parsed) if isinstance(parsed, dict) else parsed


def failure_alert(experiment_id: str, status: str, classified: Classified, execution_arn: str) -> Alert:
    """The subject (SNS allows 100 characters) and JSON body of a failure alert."""
    body = {"experiment_id": experiment_id, "status": status, "error_type": classified.error_type.value,
            "message": classified.message, "execution_arn": execution_arn}  # fmt: skip
    return {
        "alert_subject": f"codeclab {status} {classified.error_type.value} {experiment_id}"[:100],
        "alert_message": json.dumps(body, indent=2),
    }


def _item_for(
    services: Services, record: PointRecord | SweepRecord | None, execution_arn: str, point: ManifestPoint | None
) -> ExperimentRecord | None:
    if record and "experiment_id" in record and "timestamp" in record:
        return services.store.get(ExperimentKey.of(record))
    if point is not None:  # never the execution's name: a child execution's is not an experiment id
        return services.store.find(point["experiment_id"])
    name = execution_arn.rsplit(":", 1)[-1]
    return services.store.find(experiment_id_of_execution(name, execution_arn))


def _worker_verdict(services: Services, result_uri: str | None) -> Classified | None:
    """The worker's own result.json, when it wrote one, names the error more precisely than Batch."""
    try:
        result = services.read_result(result_uri) if result_uri else None
    except ResultError as exc:  # not what the worker writes: the execution's own error says more
        log.warning("ignored: %s", exc)
        return None
    if result is None or result["status"] != "FAILED":
        return None
    error = result["error"]
    return Classified(recorded_type_of_worker_error(str(error.get("type", ""))), str(error.get("message", "")))


def _finalise(services: Services, item: ExperimentRecord | None, classified: Classified, cause: str | None) -> str:
    """Write the final status unless the item is already final; return the status it ends in."""
    if item is None:
        return classified.error_type.final_status.value
    key = ExperimentKey.of(item)
    target = classified.error_type.final_status
    error = {"type": classified.error_type.value, "message": classified.message, "cause": (cause or "")[:4000]}
    try:
        services.store.transition(key, target, error=error)
    except TransitionError as exc:
        log.info("kept %s: %s", exc.current, exc)
        return exc.current.value
    except ExperimentNotFound:
        log.warning("record %s vanished before it could be finalised", key)
    return target.value
