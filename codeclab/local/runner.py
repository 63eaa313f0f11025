"""Run experiments through the local workflow and keep them in runs/<experiment_id>/.

runs/ is the local system of record: record.json (the final item), alerts.json (the SNS
alerts the experiment raised) and every artifact the worker wrote.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from codeclab.experiments import api
from codeclab.experiments.statuses import Status
from codeclab.local.emulator import LocalCloud

POLL_SECONDS = 0.25
RECORD_FILE, ALERTS_FILE = "record.json", "alerts.json"
ProgressCallback = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class Outcome:
    experiment_id: str
    status: str
    record: dict[str, Any]
    folder: Path
    alerts: list[dict[str, Any]]
    points: list[dict[str, Any]] = field(default_factory=list)  # a sweep's point records, in order

    @property
    def succeeded(self) -> bool:
        return self.status == Status.SUCCEEDED


def submit(cloud: LocalCloud, spec: dict[str, Any], idempotency_key: str | None = None) -> dict[str, Any]:
    """Start one experiment exactly as the API does (validation, naming, StartExecution)."""
    return api.submit(json.dumps(spec), idempotency_key, cloud.services())


def wait(cloud: LocalCloud, submitted: dict[str, Any], on_progress: ProgressCallback | None = None) -> dict[str, Any]:
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


def _with_point_progress(cloud: LocalCloud, record: dict[str, Any]) -> dict[str, Any]:
    """A running sweep's progress is how many of its points have ended."""
    if "points" not in record:
        return record
    store = cloud.services().store
    ended = sum(Status((store.find(p["experiment_id"]) or p)["status"]).is_final for p in record["points"])
    return {**record, "progress": {"stage": "points", "frames_done": ended, "frames_total": len(record["points"])}}


def collect(cloud: LocalCloud, record: dict[str, Any], runs_dir: Path) -> Outcome:
    """Keep the experiment in runs/<experiment_id>/; a sweep's points each get their own folder too."""
    store = cloud.services().store
    points = [store.find(p["experiment_id"]) or p for p in record.get("points", [])]
    for point in points:
        _collect_one(cloud, point, runs_dir)
    outcome = _collect_one(cloud, record, runs_dir)
    return Outcome(outcome.experiment_id, outcome.status, outcome.record, outcome.folder, outcome.alerts, points)


def _collect_one(cloud: LocalCloud, record: dict[str, Any], runs_dir: Path) -> Outcome:
    """Write record.json, alerts.json and download the artifacts into runs/<experiment_id>/."""
    experiment_id = record["experiment_id"]
    folder = runs_dir / experiment_id
    folder.mkdir(parents=True, exist_ok=True)
    s3, prefix = boto3.client("s3"), f"experiments/{experiment_id}/"
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=cloud.bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            s3.download_file(cloud.bucket, item["Key"], str(folder / item["Key"].removeprefix(prefix)))
    alerts = cloud.alerts_for(experiment_id)
    (folder / RECORD_FILE).write_text(json.dumps(record, indent=2, default=str) + "\n")
    (folder / ALERTS_FILE).write_text(json.dumps(alerts, indent=2) + "\n")
    return Outcome(experiment_id, record["status"], record, folder, alerts)


def run(
    cloud: LocalCloud, spec: dict[str, Any], runs_dir: Path, on_progress: ProgressCallback | None = None
) -> Outcome:
    submitted = submit(cloud, spec)
    record = wait(cloud, submitted, on_progress)
    return collect(cloud, record, runs_dir)


def saved_records(runs_dir: Path) -> list[dict[str, Any]]:
    """Every record kept in runs/, newest first."""
    records = [json.loads(p.read_text()) for p in runs_dir.glob(f"exp_*/{RECORD_FILE}")]
    return sorted(records, key=lambda r: r.get("timestamp", 0), reverse=True)
