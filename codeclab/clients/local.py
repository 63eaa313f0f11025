"""Local mode's client: runs/ answers reads; writes go through the API handler of a local process.

runs/ is the local system of record, mirrored at every write, so `get` and `list` read it alone.
A submit or cancel goes through the stack's API handler, as `codeclab serve` answers it: in this
process when it hosts the workflow (`codeclab run`), else over HTTP to the live `run` or `serve`
that owns the experiment (cancel) or to the newest `serve` on the folder (submit).
"""

from __future__ import annotations

import json
import time
import urllib.error
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
from codeclab.experiments.record import ExperimentRecord, PointSummary
from codeclab.experiments.spec import Spec
from codeclab.experiments.state import MANIFEST_FILE
from codeclab.experiments.statuses import Status
from codeclab.experiments.sweep_progress import point_rows, sweep_progress
from codeclab.local.client import call_api
from codeclab.local.runs import Endpoint, RunsFolder

if TYPE_CHECKING:
    from codeclab.clients.base import ProgressCallback
    from codeclab.local.service import LocalService

# runs/ is a local folder: reading a record every 0.1 s costs little and takes 0.45 s off a short run's wait.
RUNS_POLL_SECONDS = 0.1


class LocalClient:
    def __init__(self, runs_dir: Path, host: LocalService | None = None) -> None:
        """`host`: the service this process runs (`codeclab run`), which takes submissions in-process."""
        self._runs = RunsFolder(runs_dir)
        self._host = host
        self._answered_by = f"{runs_dir}/ (local)"
        # a host recovered the folder as it started; anyone else does it now, so every record read is final or live
        self._recovered = () if host else tuple(self._runs.recover())

    @property
    def recovered(self) -> tuple[str, ...]:
        return self._recovered

    @property
    def runs_root(self) -> Path:
        return self._runs.root

    def submit(self, spec: Spec, idempotency_key: str | None = None) -> Submission:
        api = _HandlerApi(self._host) if self._host else _HttpApi(self._newest_serve())
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return Submission.of(api.post("/experiments", spec_body(spec), headers), api.answered_by)

    def get(self, experiment_id: str) -> RecordSummary:
        return self._summary(self._record(experiment_id), self._answered_by)

    def cancel(self, experiment_id: str) -> Cancellation:
        record = self._record(experiment_id)
        owner = self._runs.endpoint_of(experiment_id)
        if owner is None:  # recovery has made it final: nothing runs it any more
            raise Refused(Reason.ENDED, f"{experiment_id} already ended as {record['status']}", self._answered_by)
        api = _HttpApi(owner)
        return Cancellation.of(api.post(f"/experiments/{experiment_id}/cancel"), api.answered_by)

    def wait(self, submission: Submission, on_progress: ProgressCallback | None = None) -> RecordSummary:
        if self._host is None:
            record = follow(lambda: self._current(submission.experiment_id), on_progress, RUNS_POLL_SECONDS)
            return self._summary(record, self._answered_by)
        return self._wait_here(self._host, submission, on_progress)

    def list(self, status: Status | None = None) -> Listing:
        records = tuple(r for r in self._runs.records() if status in (None, r["status"]))
        return Listing(records, self._answered_by)

    def _record(self, experiment_id: str) -> ExperimentRecord:
        record = self._runs.record(experiment_id)
        if record is None:
            raise Refused(
                Reason.NOT_FOUND, f"no experiment {experiment_id[:80]} in {self._runs.root}", self._answered_by
            )
        return record

    def _summary(self, record: ExperimentRecord, answered_by: str) -> RecordSummary:
        if "point_count" not in record:
            return RecordSummary(record, (), answered_by)
        # runs/ mirrors each point's record as it is written; the manifest arrives with the finished sweep
        experiment_id = record["experiment_id"]
        records = [r for r in self._runs.records() if r.get("parent_id") == experiment_id]
        manifest_path = self._runs.folder(experiment_id) / MANIFEST_FILE
        points: tuple[ExperimentRecord | PointSummary, ...] = tuple(
            point_rows(record, json.loads(manifest_path.read_text()), records) if manifest_path.is_file() else records
        )
        progress = sweep_progress(record, records, int(time.time() * 1000))
        return RecordSummary(record, points, answered_by, progress)

    def _newest_serve(self) -> Endpoint:
        serve = next(iter(self._runs.endpoints(kind="serve")), None)
        if serve is None:
            message = f"no `codeclab serve` is running on {self._runs.root}; start one, or drop --no-wait"
            raise Refused(Reason.UNAVAILABLE, message, self._answered_by)
        return serve

    def _current(self, experiment_id: str) -> ExperimentRecord | None:
        """The record in runs/, made final if its process died; None while a live process may still write it."""
        record = self._runs.record(experiment_id)
        if record is not None and Status(record["status"]).is_final:
            return record
        if self._runs.endpoint_of(experiment_id) or (record is None and self._runs.endpoints()):
            return record  # a live process writes it: no need to scan the whole folder for the dead
        self._runs.recover()
        if not self._runs.endpoints():  # nothing can write it any more: it is there, or it never will be
            return self._record(experiment_id)
        return self._runs.record(experiment_id)

    def _wait_here(
        self, host: LocalService, submission: Submission, on_progress: ProgressCallback | None
    ) -> RecordSummary:
        """Follow the execution in this process's emulator, then keep the experiment, artifacts and alerts, in runs/."""
        from codeclab.local import runner  # the emulator's imports are heavy: only a hosting client pays

        assert host.cloud is not None
        record = runner.wait(host.cloud, submission.as_json(), on_progress)
        try:
            runner.collect(host.cloud, record, self._runs.root)
        except OSError as exc:
            host.unsynced.add(record["experiment_id"])  # the host retries it, then parks it as it stops
            message = f"{record['status']}, but {self._runs.root} refused its artifacts: {exc.strerror}"
            raise Refused(Reason.NOT_KEPT, message, submission.answered_by) from None
        return self._summary(record, submission.answered_by)


class _LocalApi(ABC):
    """The stack's API as one local process answers it."""

    answered_by: str

    def post(self, path: str, body: str | None = None, headers: dict[str, str] | None = None) -> dict[str, Any]:
        """The 202 answer's body; any other answer is Refused, with the API's own message."""
        status, answer = self._send(path, body, headers or {})
        if status != 202:
            message = answer.get("message") if isinstance(answer, dict) else None
            raise Refused(Reason.of_status(status), str(message or answer), self.answered_by)
        return dict(answer)

    @abstractmethod
    def _send(self, path: str, body: str | None, headers: dict[str, str]) -> tuple[int, Any]:
        """POST the body; the status code and the parsed JSON answer."""


class _HandlerApi(_LocalApi):
    """This process's own API handler, called with the event API Gateway would send."""

    def __init__(self, host: LocalService) -> None:
        self._host = host
        self.answered_by = f"the API handler in this process ({host.url})"

    def _send(self, path: str, body: str | None, headers: dict[str, str]) -> tuple[int, Any]:
        from codeclab.local.http_api import proxy_event  # waitress's import is heavy: only a hosting client pays

        response = self._host.handle_api(
            proxy_event("POST", path, body, {"Content-Type": "application/json", **headers})
        )
        return response["statusCode"], json.loads(response.get("body") or "{}")


class _HttpApi(_LocalApi):
    """A local `run` or `serve` process's API, over HTTP on loopback."""

    def __init__(self, endpoint: Endpoint) -> None:
        self._url = endpoint.url
        self.answered_by = f"codeclab {endpoint.kind} at {endpoint.url}"

    def _send(self, path: str, body: str | None, headers: dict[str, str]) -> tuple[int, Any]:
        try:
            return call_api(self._url + path, "POST", body.encode() if body is not None else None, headers)
        except urllib.error.URLError as exc:
            message = f"the local codeclab process at {self._url} does not answer ({exc.reason})"
            raise Refused(Reason.UNAVAILABLE, message, self.answered_by) from None
