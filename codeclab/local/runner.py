"""Run experiments through the local workflow and keep them in runs/<experiment_id>/ (see runs.py)."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from codeclab.experiments import api
from codeclab.experiments.record import NOT_STARTED, ExperimentRecord, PointStatus, PointSummary
from codeclab.experiments.statuses import Status
from codeclab.experiments.store import ExperimentStore
from codeclab.experiments.sweep_progress import point_rows, sweep_progress
from codeclab.experiments.workflow_steps import read_manifest
from codeclab.local.emulator import LocalCloud
from codeclab.local.events import CapturedAlert
from codeclab.local.runs import JOB_LOG, RunsFolder

CHUNK_BYTES = 1 << 20
# A file time set with utime reads back within microseconds of the float it was given. As with `aws s3 sync`, an
# object rewritten within the same second (the listing's resolution) at the same size would not be fetched again;
# nothing rewrites an experiment's objects once its record is final.
MTIME_SLACK_S = 1e-3
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
    """Follow the execution until it ends and its record is final; returns the record.

    The records come from the table's writes as they land (Follower), not from reading every point again at every
    tick: a tick reads the execution's status alone, at most every TICK_SECONDS while something is written, and
    at once (ENDING_SECONDS) after the record turned final, when the execution is about to end.
    """
    sfn, store, experiment_id = cloud.sfn, cloud.services().store, submitted["experiment_id"]
    follower = Follower(experiment_id)
    cloud.record_listeners.append(follower)
    try:
        follower.start_from(store)
        while True:
            execution = sfn.describe_execution(executionArn=submitted["execution_arn"])
            record = follower.record
            if record and on_progress:
                on_progress(follower.with_point_progress(record, store.now_ms()))
            if execution["status"] != "RUNNING":
                break
            follower.next_tick()
    finally:
        cloud.record_listeners.remove(follower)
    cloud.reconcile_ended(execution)  # EventBridge's part: a run no Catch saw still ends final
    final = store.find(experiment_id)
    if final is None or not Status(final["status"]).is_final:
        raise RuntimeError(f"{experiment_id}: execution {execution['status']} left the record {final}")
    return final


TICK_SECONDS = 0.25  # the most often a tick reads the execution while records change
IDLE_SECONDS = 1.0  # how long a tick waits for a write before it looks at the execution anyway
ENDING_SECONDS = 0.02  # once the record is final, the execution ends within moments
ENDING_FOR_SECONDS = 2.0  # and if it does not (an alert still being sent), ticks go back to their pace


class Follower:
    """A record listener for one experiment: its record, and a sweep's points by id, as each write lands.

    The listener reads each written item once, in this process; `wait` then needs no read of the table to show a
    sweep's progress, however many points it has (it used to query every point's record four times a second).
    """

    def __init__(self, experiment_id: str) -> None:
        self.experiment_id = experiment_id
        self.record: ExperimentRecord | None = None
        self._points: dict[str, PointStatus] = {}
        self._lock = threading.Lock()
        self._changed = threading.Event()
        self._last_tick = 0.0
        self._final_since: float | None = None

    def __call__(self, read: Callable[[], ExperimentRecord | None]) -> None:
        item = read()
        if item is None:
            return
        with self._lock:
            if item["experiment_id"] == self.experiment_id:
                self.record = item
            elif item.get("parent_id") == self.experiment_id:
                self._points[item["experiment_id"]] = item
            else:
                return
        self._changed.set()

    def start_from(self, store: ExperimentStore) -> None:
        """What was written before this listener was: one read of the record, and for a sweep, of its points."""
        record = store.find(self.experiment_id)
        points = list(store.point_statuses(self.experiment_id)) if record and "point_count" in record else []
        with self._lock:
            self.record = self.record or record
            for point in points:  # a write since then is newer: keep it
                self._points.setdefault(point["experiment_id"], point)

    def with_point_progress(self, record: ExperimentRecord, now_ms: int) -> ExperimentRecord:
        """A sweep's progress: its points' counts by status, throughput and ETA."""
        if "point_count" not in record:  # a final sweep too: its last frame of the bar is every point done
            return record
        with self._lock:
            points = list(self._points.values())
        progress = sweep_progress(record, points, now_ms)
        return {**record, "progress": progress.as_record_progress(now_ms)}

    def next_tick(self) -> None:
        """Wait for the next tick: a write (no sooner than TICK_SECONDS after the last tick), or IDLE_SECONDS; every
        ENDING_SECONDS for the first ENDING_FOR_SECONDS after the record turned final."""
        record = self.record
        final = record is not None and Status(record["status"]).is_final
        if final and self._final_since is None:
            self._final_since = time.monotonic()
        if final and time.monotonic() - (self._final_since or 0.0) < ENDING_FOR_SECONDS:
            time.sleep(ENDING_SECONDS)
        else:
            self._changed.wait(IDLE_SECONDS)
            time.sleep(max(0.0, self._last_tick + TICK_SECONDS - time.monotonic()))
        self._changed.clear()
        self._last_tick = time.monotonic()


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
            target = folder / item["Key"].removeprefix(prefix)
            modified = item["LastModified"].timestamp()
            if _same_file(target, item["Size"], modified):
                continue  # kept by an earlier pass: the mirror keeps a final record, then collect keeps it again
            # One GET each, streamed: the transfer manager's threads cost more than these small files.
            body = s3.get_object(Bucket=cloud.bucket, Key=item["Key"])["Body"]
            with target.open("wb") as file:
                shutil.copyfileobj(body, file, CHUNK_BYTES)
            os.utime(target, (modified, modified))
    job_log = cloud.job_log(experiment_id)
    if job_log.is_file() and not _same_file(folder / JOB_LOG, *_size_and_mtime(job_log)):
        shutil.copy2(job_log, folder / JOB_LOG)  # copy2 keeps the mtime the next pass compares
    alerts = cloud.alerts_for(experiment_id)
    runs.save_alerts(experiment_id, alerts)
    runs.save_record(record)  # last: a final record.json means everything beside it is there
    return Outcome(experiment_id, record["status"], record, folder, alerts)


def _same_file(path: Path, size: int, mtime: float) -> bool:
    """Already kept, as `aws s3 sync` decides: the same size and modification time as the source's. A copy's
    time is set only once it is whole, so an interrupted copy is fetched again."""
    try:
        kept_size, kept_mtime = _size_and_mtime(path)
    except FileNotFoundError:
        return False
    return kept_size == size and abs(kept_mtime - mtime) < MTIME_SLACK_S


def _size_and_mtime(path: Path) -> tuple[int, float]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime


def run(cloud: LocalCloud, spec: object, runs_dir: Path, on_progress: ProgressCallback | None = None) -> Outcome:
    submitted = submit(cloud, spec)
    record = wait(cloud, submitted, on_progress)
    return collect(cloud, record, runs_dir)
