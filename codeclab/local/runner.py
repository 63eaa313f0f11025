"""Run experiments through the local workflow and keep them in runs/<experiment_id>/ (see runs.py)."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from codeclab.experiments import api
from codeclab.experiments.record import NOT_STARTED, ExperimentRecord, PointSummary
from codeclab.experiments.statuses import Status
from codeclab.experiments.sweep_progress import point_rows, sweep_progress
from codeclab.experiments.workflow_steps import read_manifest
from codeclab.local.emulator import LocalCloud
from codeclab.local.events import CapturedAlert
from codeclab.local.runs import JOB_LOG, RunsFolder

POLL_SECONDS = 0.25
CHUNK_BYTES = 1 << 20
ProgressCallback = Callable[[ExperimentRecord], None]


@dataclass(frozen=True)
class Outcome:
    experiment_id: str
    status: str
    record: ExperimentRecord | PointSummary  # a point that never got its own record keeps the sweep's summary
    folder: Path
    alerts: list[CapturedAlert]
    points: list[ExperimentRecord | PointSummary] = field(default_factory=list)  # a sweep's points, in order

    @property
    def succeeded(self) -> bool:
        return self.status == Status.SUCCEEDED


def submit(cloud: LocalCloud, spec: object, idempotency_key: str | None = None) -> api.Submitted:
    """Start one experiment exactly as the API does (validation, naming, StartExecution): `spec` is checked there."""
    return api.submit(json.dumps(spec), idempotency_key, cloud.services())


def wait(cloud: LocalCloud, submitted: api.Submitted, on_progress: ProgressCallback | None = None) -> ExperimentRecord:
    """Follow the execution until it ends and its record is final; returns the record."""
    sfn, store = cloud.sfn, cloud.services().store
    while True:
        execution = sfn.describe_execution(executionArn=submitted["execution_arn"])
        record = store.find(submitted["experiment_id"])
        if record and on_progress:
            on_progress(_with_point_progress(cloud, record))
        if execution["status"] != "RUNNING":
            break
        time.sleep(POLL_SECONDS)
    cloud.reconcile_ended(execution)  # EventBridge's part: a run no Catch saw still ends final
    record = store.find(submitted["experiment_id"])
    if record is None or not Status(record["status"]).is_final:
        raise RuntimeError(f"{submitted['experiment_id']}: execution {execution['status']} left the record {record}")
    return record


def _with_point_progress(cloud: LocalCloud, record: ExperimentRecord) -> ExperimentRecord:
    """A sweep's progress: its points' counts by status, throughput and ETA."""
    if "point_count" not in record:  # a final sweep too: its last frame of the bar is every point done
        return record
    store = cloud.services().store
    progress = sweep_progress(record, store.point_statuses(record["experiment_id"]), store.now_ms())
    return {**record, "progress": progress.as_record_progress(store.now_ms())}


def collect(cloud: LocalCloud, record: ExperimentRecord, runs_dir: Path) -> Outcome:
    """Keep the experiment in runs/<experiment_id>/; a sweep's points each get their own folder too (the sweep's
    own folder keeps its manifest, points.json, which names them all)."""
    points: list[ExperimentRecord | PointSummary] = []
    if "manifest_uri" in record:
        services = cloud.services()
        manifest = read_manifest(services, record["manifest_uri"])
        points = point_rows(record, manifest, services.store.points_of(record["experiment_id"]))
    runs = RunsFolder(runs_dir)
    for point in points:
        if point["status"] != NOT_STARTED and not _kept(runs, point):
            keep(cloud, point, runs_dir)
    outcome = keep(cloud, record, runs_dir)
    return Outcome(outcome.experiment_id, outcome.status, outcome.record, outcome.folder, outcome.alerts, points)


def _kept(runs: RunsFolder, point: ExperimentRecord | PointSummary) -> bool:
    """A point `codeclab run` already kept when it ended: its final record.json is written after its artifacts."""
    saved = runs.record(point["experiment_id"])
    return saved is not None and saved["status"] == point["status"] and Status(saved["status"]).is_final


def keep(cloud: LocalCloud, record: ExperimentRecord | PointSummary, runs_dir: Path) -> Outcome:
    """The artifacts, the job's log and the alerts into runs/<experiment_id>/, then the record: a final
    record.json means the artifacts beside it are complete."""
    runs, experiment_id = RunsFolder(runs_dir), record["experiment_id"]
    folder = runs.folder(experiment_id)
    folder.mkdir(parents=True, exist_ok=True)
    s3, prefix = cloud.services().s3, f"experiments/{experiment_id}/"
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=cloud.bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            # One GET each, streamed: the transfer manager's threads cost more than these small files.
            body = s3.get_object(Bucket=cloud.bucket, Key=item["Key"])["Body"]
            with (folder / item["Key"].removeprefix(prefix)).open("wb") as file:
                shutil.copyfileobj(body, file, CHUNK_BYTES)
    if cloud.job_log(experiment_id).is_file():
        shutil.copyfile(cloud.job_log(experiment_id), folder / JOB_LOG)
    alerts = cloud.alerts_for(experiment_id)
    runs.save_alerts(experiment_id, alerts)
    runs.save_record(record)  # last: a final record.json means everything beside it is there
    return Outcome(experiment_id, record["status"], record, folder, alerts)


def run(cloud: LocalCloud, spec: object, runs_dir: Path, on_progress: ProgressCallback | None = None) -> Outcome:
    submitted = submit(cloud, spec)
    record = wait(cloud, submitted, on_progress)
    return collect(cloud, record, runs_dir)
