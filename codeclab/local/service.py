"""A running local stack: the emulator, the HTTP API on loopback, and runs/ kept as experiments go.

Used by `codeclab serve` (for as long as it runs) and by `codeclab run` (for one experiment, so that
`codeclab cancel` from another terminal reaches it). Every write to the experiments table is mirrored
into runs/<id>/record.json as it lands, with this process named as its owner; a collector adds the
artifacts and alerts once an experiment ends. Several processes may share one runs folder: each
registers its own endpoint, and each experiment names the process that runs it.

Interrupted, the service stops what runs the way `codeclab cancel` does (`stop_all`), or, asked twice,
at once (`abort_now`). Either way every experiment it ran ends final in runs/.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any, cast

from codeclab.experiments import api
from codeclab.experiments.api_contract import ProxyEvent, ProxyResponse
from codeclab.experiments.limits import codec_caps
from codeclab.experiments.statuses import Status
from codeclab.experiments.store import ExperimentKey, from_dynamo, to_dynamo
from codeclab.experiments.workflow_steps import experiment_id_of_execution
from codeclab.local import runner
from codeclab.local.emulator import LocalCloud
from codeclab.local.http_api import ApiServer
from codeclab.local.runs import Endpoint, ProcessId, RunsFolder

log = logging.getLogger("codeclab.local")

COLLECT_EVERY_SECONDS = 1.0
STOP_WAIT_SECONDS = 60.0
CANCELLED = "cancelled: the local codeclab process running it was interrupted"
DRAINING: ProxyResponse = {"statusCode": 503, "headers": {"Retry-After": "5", "Content-Type": "application/json"},
            "body": '{"message": "codeclab is stopping: it takes no new experiments"}'}  # fmt: skip


class LocalService:
    def __init__(self, runs_dir: Path, port: int = 0, kind: str = "serve", jobs: int | None = None) -> None:
        """`jobs`: how many Batch jobs it will run, when that is known (a `run` of one spec): no idle standbys."""
        self.runs = RunsFolder(runs_dir)
        self.expected_jobs = jobs
        self.port, self.kind = port, kind
        self.owner = ProcessId.current()
        self.cloud: LocalCloud | None = None
        self.api: ApiServer | None = None
        self.endpoint: Endpoint | None = None
        self.recovered: list[str] = []  # experiments a dead process had left unfinished, finalised at start
        self.unsynced: set[str] = set()  # records whose mirror write failed (a full disk): retried each pass
        self.parked: list[str] = []  # what runs/ could still not take at exit, and where it went instead
        self._draining = False
        self._mirror_lock = threading.Lock()
        self._stop = threading.Event()
        self._collector = threading.Thread(target=self._collect_forever, name="collector", daemon=True)
        self._collected: set[str] = set()

    @property
    def url(self) -> str:
        assert self.api is not None
        return self.api.url

    def __enter__(self) -> LocalService:
        try:
            self._start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _start(self) -> None:
        self.runs.root.mkdir(parents=True, exist_ok=True)
        self.recovered = self.runs.recover()
        self.cloud = LocalCloud(jobs=self.expected_jobs).__enter__()
        if self.kind == "serve":  # a `run` answers only for its own experiments; others read runs/ directly
            self._import_finished()
        self.cloud.record_listeners.append(self._mirror)
        caps = codec_caps(self.cloud.lambda_environment)  # what CreateRecord holds requests to
        self.api = ApiServer(self.handle_api, port=self.port, caps=caps).start()
        self.endpoint = self.runs.register(self.url, self.kind, self.cloud.job_folder)
        self._collector.start()

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._collector.is_alive():
            self._collector.join()
        if self.cloud is not None and self.unsynced:
            self.collect_ended()  # one last try to write what the disk refused, then park what is left
            self.parked = [self._park(experiment_id) for experiment_id in sorted(self.unsynced)]
        if self.endpoint is not None:
            self.runs.unregister(self.endpoint)
        if self.api is not None:
            self.api.stop()
        if self.cloud is not None:
            self.cloud.__exit__(*exc)

    def _import_finished(self) -> None:
        """Finished experiments already in runs/ go into the fresh table, so the serve's API lists and gets them
        too. Unfinished ones belong to another live process on this folder: they stay its own."""
        assert self.cloud is not None
        finished = [record for record in self.runs.records() if Status(record["status"]).is_final]
        if not finished:
            return
        # 25 items a request: one request each took 26 ms, so 300 kept experiments cost every start 8 s
        with self.cloud.services().store.table.batch_writer() as batch:
            for record in finished:
                batch.put_item(Item=to_dynamo(record))

    def serve_forever(self) -> None:
        """Block until interrupted; the API and the collector run on their own threads."""
        self._stop.wait()

    def handle_api(self, event: ProxyEvent) -> ProxyResponse:
        """The stack's API handler, as this process answers it over HTTP and in-process (no new POSTs once stopping)."""
        if self._draining and event.get("httpMethod") == "POST":
            return DRAINING
        assert self.cloud is not None
        return cast(ProxyResponse, self.cloud.invoke_handler("api", dict(event)))

    # -- runs/ as experiments go ---------------------------------------------------------
    def _mirror(self, read: Any) -> None:
        """After each write to the table: the item as it now stands, into runs/<id>/record.json."""
        with self._mirror_lock:  # the last writer reads the latest state, so the file ends current
            item = read()
            if item is None:
                return
            record = from_dynamo(item)
            try:
                if Status(record["status"]).is_final:  # its artifacts are in place: keep them with it
                    assert self.cloud is not None
                    runner.keep(self.cloud, record, self.runs.root)
                else:
                    self.runs.save_record(record, self.owner)
            except OSError as exc:
                self.unsynced.add(record["experiment_id"])
                log.warning("cannot write %s to %s: %s; kept in the emulator, retried", record["experiment_id"],
                            self.runs.root, exc)  # fmt: skip
            else:
                self.unsynced.discard(record["experiment_id"])

    def _collect_forever(self) -> None:
        while not self._stop.wait(COLLECT_EVERY_SECONDS):
            try:
                self.collect_ended()
            except Exception:  # keep collecting; the next pass retries what failed
                log.exception("collecting ended experiments failed")

    def collect_ended(self) -> list[str]:
        """Finalise (as EventBridge + Reconcile would) and save every ended, uncollected experiment."""
        assert self.cloud is not None
        sfn, store, saved = self.cloud.sfn, self.cloud.services().store, []
        for execution in _executions(sfn, self.cloud.state_machine_arn):
            if execution["status"] == "RUNNING" or execution["executionArn"] in self._collected:
                continue
            described = sfn.describe_execution(executionArn=execution["executionArn"])
            self.cloud.reconcile_ended(described)
            experiment_id = experiment_id_of_execution(described["name"], described["executionArn"])
            record = store.find(experiment_id)
            if record is not None:
                try:
                    runner.collect(self.cloud, record, self.runs.root)
                except OSError as exc:  # a full disk: kept in the emulator, retried, parked at exit
                    self.unsynced.add(experiment_id)
                    log.warning("cannot keep %s in %s: %s", experiment_id, self.runs.root, exc)
                    continue
                self.unsynced.discard(experiment_id)
                saved.append(experiment_id)
            self._collected.add(execution["executionArn"])
        for experiment_id in list(self.unsynced):  # the disk may have room again
            record = store.find(experiment_id)
            if record is not None:
                self._mirror(lambda record=record: record)
        return saved

    def _park(self, experiment_id: str) -> str:
        assert self.cloud is not None
        record = self.cloud.services().store.find(experiment_id)
        if record is None:
            return experiment_id
        try:
            return f"{experiment_id}: parked at {self.runs.park(record)}"
        except OSError as exc:
            return f"{experiment_id}: could not be kept anywhere ({exc.strerror}); its record: {record}"

    # -- interruption --------------------------------------------------------------------
    def unfinished(self) -> list[dict[str, Any]]:
        assert self.cloud is not None
        store = self.cloud.services().store
        return [record for status in (Status.QUEUED, Status.RUNNING) for record in _all(store, status)]

    def stop_all(self) -> list[str]:
        """Cancel every unfinished experiment as `codeclab cancel` does; wait until each is final and in runs/.

        An experiment is unfinished while its execution runs, recorded or not: a burst of POSTs is answered
        before CreateRecord has written each record, and Reconcile writes the record of one stopped before.
        """
        assert self.cloud is not None
        self._draining = True
        services, stopped = self.cloud.services(), []
        for execution in _executions(self.cloud.sfn, self.cloud.state_machine_arn, "RUNNING"):
            experiment_id = experiment_id_of_execution(execution["name"], execution["executionArn"])
            found = services.store.find(experiment_id)
            if found is not None and (found.get("parent_id") or Status(found["status"]).is_final):
                continue  # a sweep's point (stopping the sweep's execution ends it), or one already final
            try:
                self.cloud.sfn.stop_execution(executionArn=execution["executionArn"], error="ABORTED", cause=CANCELLED)
            except self.cloud.sfn.exceptions.ExecutionDoesNotExist:  # gone meanwhile
                continue
            stopped.append(experiment_id)
        for record in self.unfinished():  # a record whose execution never started or is gone
            if record.get("parent_id") or record["experiment_id"] in stopped:
                continue
            try:
                api.cancel(record["experiment_id"], services)
            except api.ApiError:  # it ended meanwhile
                continue
            stopped.append(record["experiment_id"])
        deadline = time.monotonic() + STOP_WAIT_SECONDS
        while _executions(self.cloud.sfn, self.cloud.state_machine_arn, "RUNNING") and time.monotonic() < deadline:
            time.sleep(0.1)
        self.collect_ended()
        return [i for i in stopped if (ended := services.store.find(i)) and ended["status"] == Status.ABORTED]

    def abort_now(self, reason: str) -> list[str]:
        """Mark every unfinished experiment ABORTED at once and kill its job; runs/ follows each write."""
        assert self.cloud is not None
        self._draining = True
        self.cloud.jobs.kill_all()
        store, aborted = self.cloud.services().store, []
        for record in self.unfinished():
            error = {"type": "ABORTED", "message": reason, "cause": ""}
            try:
                store.transition(ExperimentKey.of(record), Status.ABORTED, error=error)
            except Exception:  # ended meanwhile: final either way
                continue
            aborted.append(record["experiment_id"])
        return aborted


def _all(store: Any, status: Status) -> list[dict[str, Any]]:
    records, start = store.list_by_status(status)
    while start:
        more, start = store.list_by_status(status, start=start)
        records += more
    return records


def _executions(sfn: Any, state_machine_arn: str, status: str | None = None) -> list[dict[str, Any]]:
    pages = sfn.get_paginator("list_executions").paginate(
        stateMachineArn=state_machine_arn, **({"statusFilter": status} if status else {})
    )
    return [execution for page in pages for execution in page["executions"]]
