"""A running local stack: the emulator, the HTTP API on loopback, and a collector that keeps runs/.

Used by `codeclab serve` (for as long as it runs) and by `codeclab run` (for one experiment,
so that `codeclab cancel` from another terminal reaches it). While it runs, runs/.local-api.json
says where its API answers.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

from codeclab.experiments.workflow_steps import experiment_id_of_execution
from codeclab.local import ENDPOINT_FILE, runner
from codeclab.local.emulator import LocalCloud
from codeclab.local.http_api import ApiServer

log = logging.getLogger("codeclab.local")

COLLECT_EVERY_SECONDS = 1.0


class LocalService:
    def __init__(self, runs_dir: Path, port: int = 0) -> None:
        self.runs_dir = runs_dir
        self.port = port
        self.cloud: LocalCloud | None = None
        self.api: ApiServer | None = None
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
        self.cloud = LocalCloud().__enter__()
        self.api = ApiServer(lambda event: self.cloud.invoke_handler("api", event), port=self.port).start()  # type: ignore[union-attr]
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        (self.runs_dir / ENDPOINT_FILE).write_text(json.dumps({"url": self.url, "pid": os.getpid()}) + "\n")
        self._collector.start()

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._collector.is_alive():
            self._collector.join()
        (self.runs_dir / ENDPOINT_FILE).unlink(missing_ok=True)
        if self.api is not None:
            self.api.stop()
        if self.cloud is not None:
            self.cloud.__exit__(*exc)

    def serve_forever(self) -> None:
        """Block until interrupted; the API and the collector run on their own threads."""
        self._stop.wait()

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
                runner.collect(self.cloud, record, self.runs_dir)
                saved.append(experiment_id)
            self._collected.add(execution["executionArn"])
        return saved


def _executions(sfn: Any, state_machine_arn: str) -> list[dict[str, Any]]:
    pages = sfn.get_paginator("list_executions").paginate(stateMachineArn=state_machine_arn)
    return [execution for page in pages for execution in page["executions"]]
