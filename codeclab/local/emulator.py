"""The local AWS: moto in server mode on loopback, with the stack deployed from its own template.

The same boto3 code paths as on AWS reach it through AWS_ENDPOINT_URL. LocalCloud is the lifecycle (the
server, the process environment, the patches) and composes the parts that do the rest:
- deploy.py: the template's resources, created in moto;
- hooks.py: the Lambda handlers, run in this process, and the listeners of the experiments table;
- jobs.py: Batch jobs, run as local worker processes;
- events.py: EventBridge's part (the Reconcile rule) and the capture of alerts;
- faults.py: the fault plan, which every injection point asks.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
import threading
import time
import warnings
from contextlib import suppress
from functools import cached_property
from pathlib import Path
from typing import Any

import requests
from moto.server import ThreadedMotoServer

from codeclab.experiments.aws_clients import client as aws_client
from codeclab.experiments.aws_clients import forget as forget_aws_clients
from codeclab.experiments.limits import codec_caps
from codeclab.experiments.services import LOCAL_PACKAGES_ENV, Services
from codeclab.experiments.store import ExperimentStore
from codeclab.local import aws_faults, patches
from codeclab.local.deploy import Stack
from codeclab.local.events import AlertCapture, CapturedAlert, ExecutionDetail, ReconcileRule
from codeclab.local.faults import FaultState
from codeclab.local.hooks import Handlers, RecordListener, RecordWrites
from codeclab.local.jobs import LocalJobRunner, WarmWorkers, warm_worker_count
from codeclab.local.runs import SCRATCH_PREFIX
from codeclab.local.template import REGION, default_cdk_out, synthesized_template

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", "AWS_SESSION_TOKEN": "local"}
# Local jobs may be shorter than Batch's 60 s minimum attempt duration (tests use a few seconds).
LOCAL_MIN_JOB_SECONDS = "1"
# moto's parse of the state machine, kept beside the synthesized template it came from (patches.py, "one parse").
PARSED_FOLDER = "codeclab-parsed-definitions"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalCloud:
    """Start with `with LocalCloud(cdk_out) as cloud:`; everything is gone when the block ends."""

    def __init__(self, cdk_out: Path | None = None, quiet: bool = True, jobs: int | None = None) -> None:
        """`jobs`: how many Batch jobs this stack will run, when the caller knows (`codeclab run` of one spec)."""
        started = time.perf_counter()
        self._cdk_out = cdk_out or default_cdk_out()
        self.stack = Stack(synthesized_template(self._cdk_out))
        self.timings = {"template_s": time.perf_counter() - started}  # synthesis, when the sources changed
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._quiet = quiet
        self._server: ThreadedMotoServer | None = None
        self._saved_env: dict[str, str | None] = {}
        self.job_folder = Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX))  # logs and worker temp files; removed on exit
        self.faults = FaultState()
        self.handlers = Handlers(self.faults)
        self._writes = RecordWrites(self.stack.table_name)
        emulator = {**CREDENTIALS, "AWS_ENDPOINT_URL": self.endpoint, "AWS_DEFAULT_REGION": REGION}
        self.jobs = LocalJobRunner(self.stack.job_definition(), emulator, self.job_folder, self.faults.plan)
        self._reconcile = ReconcileRule(self.handlers, self.stack.async_retry_attempts("reconcile"))
        self._alerts = AlertCapture()
        self._thread_services = threading.local()  # see services()
        self._preloading: threading.Thread | None = None  # the handlers' imports (Handlers.preload)
        self._expected_jobs = jobs

    # -- lifecycle -----------------------------------------------------------------------
    def __enter__(self) -> LocalCloud:
        try:
            self._start()
        except BaseException:
            self.__exit__(None, None, None)  # a half-started emulator must not leak patches or env
            raise
        return self

    def _start(self) -> None:
        started = time.perf_counter()
        self.faults.plan()  # a fault switch set to a value it cannot take stops the start, not a run later
        self._set_env({"MOTO_PORT": str(self.port)})  # moto's integrations call localhost:$MOTO_PORT
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one access-log line per AWS call otherwise
        if self._quiet:  # moto logs each caught error and Fail state at ERROR; the records and alerts tell it better
            logging.getLogger("moto.stepfunctions.parser").setLevel(logging.CRITICAL)
        warnings.filterwarnings("ignore", "No application metrics to publish")  # metrics are off locally
        # With metrics off, Powertools never flushes, so a dimension stays set into the next invocation
        warnings.filterwarnings("ignore", "Dimension 'codec' has already been added")
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        # moto's backends are process-wide: start from empty, whatever ran in this process before
        requests.post(f"{self.endpoint}/moto-api/reset", timeout=10)
        requests.post(
            f"{self.endpoint}/moto-api/config", json={"stepfunctions": {"execute_state_machine": True}}, timeout=10
        )
        self._set_env({**CREDENTIALS, "AWS_ENDPOINT_URL": self.endpoint, "AWS_DEFAULT_REGION": REGION,
                       **self.lambda_environment})  # fmt: skip
        patches.install(self.handlers.run, self.jobs, self._writes, parse_cache=self._cdk_out / PARSED_FOLDER)
        aws_faults.install(self.faults.take_aws)
        if standbys := warm_worker_count(self._expected_jobs):  # they import while the stack deploys, on another core
            self.jobs.warm = WarmWorkers(standbys, limit=self._expected_jobs).start()
        self.timings["emulator_start_s"] = time.perf_counter() - started
        started = time.perf_counter()
        self.stack.deploy()
        self._alerts.subscribe(self.stack.alert_topic_arn)
        self.timings["deploy_s"] = time.perf_counter() - started
        self._preloading = self.handlers.preload(self.stack.handler_modules)

    def __exit__(self, *exc: object) -> None:
        if self._preloading is not None:
            self._preloading.join()  # unload() must not race an import still under way
        if self.jobs.warm is not None:
            self.jobs.warm.close()
            self.jobs.warm = None
        patches.uninstall()
        aws_faults.uninstall()
        if self._server is not None:
            with suppress(requests.RequestException):
                requests.post(f"{self.endpoint}/moto-api/reset", timeout=10)
            patches.stop_server(self._server)
            self._server = None
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self.handlers.unload()
        forget_aws_clients()  # they hold this emulator's endpoint and fault hook
        shutil.rmtree(self.job_folder, ignore_errors=True)

    def _set_env(self, values: dict[str, str]) -> None:
        for name, value in values.items():
            self._saved_env.setdefault(name, os.environ.get(name))
            os.environ[name] = value

    @cached_property
    def lambda_environment(self) -> dict[str, str]:
        """The functions' variables, with local mode's settings under them; one process runs them all here."""
        local = {"POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_METRICS_DISABLED": "true",
                 "MIN_JOB_SECONDS": LOCAL_MIN_JOB_SECONDS, LOCAL_PACKAGES_ENV: "true"}  # fmt: skip
        if self._quiet:
            local["POWERTOOLS_LOG_LEVEL"] = "ERROR"
        return {**local, **self.stack.function_variables}

    # -- what callers use ------------------------------------------------------------------
    @property
    def table_name(self) -> str:
        return self.stack.table_name

    @property
    def state_machine_arn(self) -> str:
        return self.stack.state_machine_arn

    @property
    def bucket(self) -> str:
        return self.stack.bucket

    def services(self) -> Services:
        """This thread's clients of the emulator: made once per thread (boto3 resources are not thread-safe), as
        a client costs more to make than most calls cost to answer."""
        services: Services | None = getattr(self._thread_services, "services", None)
        if services is None:
            services = Services(
                store=ExperimentStore(self.table_name),
                bucket=self.bucket,
                state_machine_arn=self.state_machine_arn,
                local_packages=True,
                codec_caps=codec_caps(self.lambda_environment),  # the template's, as the handlers have them
            )
            self._thread_services.services = services
        return services

    @cached_property
    def sfn(self) -> Any:
        """One Step Functions client for the emulator's own polling (created once the endpoint is set)."""
        return aws_client("stepfunctions")

    @property
    def record_listeners(self) -> list[RecordListener]:
        """Called with a reader of the item's current state after every write to the experiments table."""
        return self._writes.listeners

    def job_log(self, experiment_id: str) -> Path:
        """The local Batch job's stdout and stderr for this experiment (every attempt)."""
        return self.jobs.log_of(experiment_id)

    def invoke_handler(self, module_name: str, event: dict[str, Any]) -> dict[str, Any]:
        """Call one of the stack's handlers directly, as API Gateway would (its exception is the caller's)."""
        result: dict[str, Any] = self.handlers.call(module_name, "handler", module_name, event)
        return result

    def reconcile_ended(self, execution: ExecutionDetail) -> None:
        """Deliver "Step Functions Execution Status Change" for an execution, as EventBridge's rule does."""
        self._reconcile.deliver(execution)

    def alerts_for(self, experiment_id: str) -> list[CapturedAlert]:
        """The alerts captured so far that name this experiment (subject, parsed message)."""
        return self._alerts.alerts_for(experiment_id)
