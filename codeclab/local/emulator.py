"""The local AWS: moto in server mode on loopback, with the stack deployed from its own template.

The same boto3 code paths as on AWS reach it through AWS_ENDPOINT_URL. Lambda invokes run the
real handlers in this process, and Batch jobs run the worker as a local process (patches.py).
moto has no EventBridge delivery of Step Functions status changes, so `reconcile_ended` plays
that rule's part and invokes the Reconcile function itself.
"""

from __future__ import annotations

import importlib
import io
import json
import logging
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
import warnings
import zipfile
from collections import Counter
from collections.abc import Callable
from contextlib import suppress
from functools import cached_property
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import requests
from moto.server import ThreadedMotoServer

from codeclab.experiments.services import Services
from codeclab.experiments.store import ExperimentStore
from codeclab.local import patches
from codeclab.local.aws_faults import AwsFaultInjector
from codeclab.local.jobs import JobDefinition, LocalJobRunner, RetryStrategy, TimeLimitAction
from codeclab.local.runs import SCRATCH_PREFIX
from codeclab.local.template import ACCOUNT, REGION, Resolver, cdk_app_dir, default_cdk_out, synthesized_template

log = logging.getLogger("codeclab.local")

# MODULE[:N]: a handler module (e.g. "record_result") whose invocations fail, as a Lambda error would;
# every one of them, or only the first N (until reset_faults).
LAMBDA_FAULT_ENV = "CODECLAB_LAMBDA_FAULT"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", "AWS_SESSION_TOKEN": "local"}
# Local jobs may be shorter than Batch's 60 s minimum attempt duration (tests use a few seconds).
LOCAL_MIN_JOB_SECONDS = "1"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/codeclab-local"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalCloud:
    """Start with `with LocalCloud(cdk_out) as cloud:`; everything is gone when the block ends."""

    def __init__(self, cdk_out: Path | None = None, quiet: bool = True) -> None:
        started = time.perf_counter()
        self.template = synthesized_template(cdk_out or default_cdk_out())
        self.timings = {"template_s": time.perf_counter() - started}  # synthesis, when the sources changed
        self.resolver = Resolver(self.template)
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._quiet = quiet
        self._server: ThreadedMotoServer | None = None
        self._saved_env: dict[str, str | None] = {}
        self._handlers: dict[str, ModuleType] = {}
        # One invocation of a handler at a time, as one Lambda instance serves them: a sweep's Map calls a handler
        # from several threads, and its module state (Powertools' resolver and metrics) is not shared-safe.
        # Different handlers run side by side, as different functions do, so the API answers while the
        # workflow's functions run. Imports (sys.path, sys.modules) take the one import lock.
        self._import_lock = threading.Lock()
        self._handler_locks: dict[str, threading.RLock] = {}
        self.alert_queue_url = ""
        self._alerts: list[dict[str, Any]] = []
        self.job_folder = Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX))  # logs and worker temp files; removed on exit
        # called with a reader of the item's current state after every write to the experiments table
        self.record_listeners: list[Callable[[Callable[[], dict[str, Any] | None]], None]] = []
        self.aws_faults = AwsFaultInjector()  # armed by the fault matrix; idle otherwise
        self._lambda_faults_fired: Counter[str] = Counter()
        self.dead_letters: list[dict[str, Any]] = []  # async events whose every try failed (the DLQ's part)

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
        self.jobs = self._job_runner()
        patches.install(self._run_lambda, self.jobs, self._item_written)
        self.aws_faults.install()
        self.timings["emulator_start_s"] = time.perf_counter() - started
        started = time.perf_counter()
        self._deploy()
        self.timings["deploy_s"] = time.perf_counter() - started

    def __exit__(self, *exc: object) -> None:
        patches.uninstall()
        self.aws_faults.uninstall()
        if self._server is not None:
            with suppress(requests.RequestException):
                requests.post(f"{self.endpoint}/moto-api/reset", timeout=10)
            self._server.stop()
            self._server = None
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        for module in self._handlers:
            sys.modules.pop(module, None)
        sys.modules.pop("observability", None)
        shutil.rmtree(self.job_folder, ignore_errors=True)

    def _set_env(self, values: dict[str, str]) -> None:
        for name, value in values.items():
            self._saved_env.setdefault(name, os.environ.get(name))
            os.environ[name] = value

    # -- what the stack defines ----------------------------------------------------------
    def _one(self, resource_type: str) -> tuple[str, dict[str, Any]]:
        (item,) = self.resolver.of_type(resource_type).items()
        return item

    @cached_property
    def table_name(self) -> str:
        return self.resolver.ref(self._one("AWS::DynamoDB::Table")[0])

    @property
    def state_machine_arn(self) -> str:
        return self.resolver.ref(self._one("AWS::StepFunctions::StateMachine")[0])

    @property
    def bucket(self) -> str:
        return self.lambda_environment["ARTIFACT_BUCKET"]

    def services(self) -> Services:
        return Services(
            store=ExperimentStore(self.table_name), bucket=self.bucket, state_machine_arn=self.state_machine_arn
        )

    def _functions(self) -> dict[str, dict[str, Any]]:
        return self.resolver.of_type("AWS::Lambda::Function")

    @cached_property
    def lambda_environment(self) -> dict[str, str]:
        """The functions' variables, resolved; they share one process here, so one merged set."""
        merged: dict[str, str] = {"POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_METRICS_DISABLED": "true",
                                  "MIN_JOB_SECONDS": LOCAL_MIN_JOB_SECONDS}  # fmt: skip
        if self._quiet:
            merged["POWERTOOLS_LOG_LEVEL"] = "ERROR"
        for logical_id in self._functions():
            merged.update(self.resolver.function_variables(logical_id))
        return merged

    # -- deploy --------------------------------------------------------------------------
    def _deploy(self) -> None:
        self._deploy_table()
        for logical_id in self.resolver.of_type("AWS::S3::Bucket"):
            boto3.client("s3").create_bucket(Bucket=self.resolver.ref(logical_id))
        self._deploy_alerts()
        self._deploy_functions()
        _, machine = self._one("AWS::StepFunctions::StateMachine")
        definition = self.resolver.resolve(machine["Properties"]["DefinitionString"])
        boto3.client("stepfunctions").create_state_machine(
            name=self.resolver.get_att(self._one("AWS::StepFunctions::StateMachine")[0], "Name"),
            definition=definition,
            roleArn=ROLE_ARN,
            type="STANDARD",
        )

    def _deploy_table(self) -> None:
        logical_id, table = self._one("AWS::DynamoDB::Table")
        props = table["Properties"]
        boto3.client("dynamodb").create_table(
            TableName=self.resolver.ref(logical_id),
            BillingMode="PAY_PER_REQUEST",
            KeySchema=props["KeySchema"],
            AttributeDefinitions=props["AttributeDefinitions"],
            GlobalSecondaryIndexes=props.get("GlobalSecondaryIndexes", []),
        )

    def _deploy_alerts(self) -> None:
        """The alert topic, with an SQS queue subscribed so every alert published locally is captured."""
        logical_id, _ = self._one("AWS::SNS::Topic")
        sns, sqs = boto3.client("sns"), boto3.client("sqs")
        topic_arn = sns.create_topic(Name=self.resolver.get_att(logical_id, "TopicName"))["TopicArn"]
        self.alert_queue_url = sqs.create_queue(QueueName="codeclab-local-alerts")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=self.alert_queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        sns.subscribe(
            TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "false"}
        )

    def _deploy_functions(self) -> None:
        client, code = boto3.client("lambda"), _placeholder_zip()
        boto3.client("iam").create_role(
            RoleName="codeclab-local", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []})
        )
        for logical_id, resource in self._functions().items():
            props = resource["Properties"]
            client.create_function(
                FunctionName=self.resolver.ref(logical_id),
                Runtime=props.get("Runtime", "python3.11"),
                Role=ROLE_ARN,
                Handler=props["Handler"],
                Code={"ZipFile": code},
                Environment={"Variables": self.resolver.function_variables(logical_id)},
            )

    # -- hooks ---------------------------------------------------------------------------
    def _item_written(self, table_name: str, read: Callable[[], dict[str, Any] | None]) -> None:
        if table_name != self.table_name:
            return
        for listener in self.record_listeners:
            try:
                listener(read)
            except Exception:  # a listener must never turn a write that landed into a failed one
                log.exception("a record listener failed")

    def job_log(self, experiment_id: str) -> Path:
        """The local Batch job's stdout and stderr for this experiment (every attempt)."""
        return self.jobs.log_of(experiment_id)

    def _run_lambda(self, function_name: str, handler: str, env: dict[str, str], event: Any) -> tuple[str, bool]:
        module_name, _, attribute = handler.partition(".")
        try:
            result = self._call_handler(module_name, attribute, function_name, event)
        except Exception as exc:  # a handler's exception is the Lambda's function error, as on AWS
            log.info("%s raised %s: %s", function_name, type(exc).__name__, exc)
            return patches.lambda_error_payload(exc), True
        return json.dumps(result, default=str), False

    def _call_handler(self, module_name: str, attribute: str, function_name: str, event: Any) -> Any:
        if self._lambda_fault_fires(module_name):
            raise InjectedLambdaFault(f"{LAMBDA_FAULT_ENV}: injected failure of {function_name}")
        module, lock = self._handler_module(module_name)
        with lock:
            return getattr(module, attribute)(event, _LocalContext(function_name))

    def _lambda_fault_fires(self, module_name: str) -> bool:
        value = os.environ.get(LAMBDA_FAULT_ENV, "")
        target, _, times = value.partition(":")
        if target != module_name:
            return False
        with self._import_lock:
            self._lambda_faults_fired[value] += 1
            return not times or self._lambda_faults_fired[value] <= int(times)

    def reset_faults(self) -> None:
        """Forget counted Lambda faults and unspent AWS faults, so the next run starts clean."""
        self._lambda_faults_fired.clear()
        self.aws_faults.disarm()

    def _handler_module(self, name: str) -> tuple[ModuleType, threading.RLock]:
        """The handler's module, imported once, and the lock one invocation of it holds."""
        with self._import_lock:
            if name not in self._handlers:
                lambdas = str(cdk_app_dir() / "lambdas")
                sys.path.insert(0, lambdas)
                # a fresh import, so module-scope clients bind to this emulator, not an earlier one
                sys.modules.pop(name, None)
                try:
                    self._handlers[name] = importlib.import_module(name)
                finally:
                    sys.path.remove(lambdas)
                self._handler_locks[name] = threading.RLock()
            return self._handlers[name], self._handler_locks[name]

    def invoke_handler(self, module_name: str, event: dict[str, Any]) -> dict[str, Any]:
        """Call one of the stack's handlers directly, as API Gateway would (its exception is the caller's)."""
        return self._call_handler(module_name, "handler", module_name, event)

    def invoke_async(self, module_name: str, event: dict[str, Any]) -> dict[str, Any] | None:
        """As Lambda runs an asynchronous invoke (EventBridge's): a first try, then the function's retry
        attempts from its EventInvokeConfig; an event that fails every try goes to the dead letters."""
        tries = 1 + self._async_retry_attempts(module_name)
        for attempt in range(1, tries + 1):
            try:
                return self.invoke_handler(module_name, event)
            except Exception as exc:
                log.info("%s async try %d of %d raised %s: %s", module_name, attempt, tries, type(exc).__name__, exc)
        self.dead_letters.append(event)
        return None

    def _async_retry_attempts(self, module_name: str) -> int:
        names = {
            self.resolver.ref(logical_id)
            for logical_id, resource in self._functions().items()
            if resource["Properties"]["Handler"].partition(".")[0] == module_name
        }
        for config in self.resolver.of_type("AWS::Lambda::EventInvokeConfig").values():
            if self.resolver.resolve(config["Properties"]["FunctionName"]) in names:
                return int(config["Properties"].get("MaximumRetryAttempts", 2))
        return 2  # Lambda's default for asynchronous invokes

    def _job_runner(self) -> LocalJobRunner:
        _, job = self._one("AWS::Batch::JobDefinition")
        container = self.resolver.resolve(job["Properties"]["ContainerProperties"])
        _, queue = self._one("AWS::Batch::JobQueue")
        definition = JobDefinition(
            command=list(container.get("Command", [])),
            environment={e["Name"]: str(e["Value"]) for e in container.get("Environment", [])},
            retry=RetryStrategy.from_template(job["Properties"].get("RetryStrategy")),
            time_limit_actions=tuple(
                TimeLimitAction.from_template(entry)
                for entry in queue["Properties"].get("JobStateTimeLimitActions", [])
            ),
        )
        emulator = {**CREDENTIALS, "AWS_ENDPOINT_URL": self.endpoint, "AWS_DEFAULT_REGION": REGION}
        return LocalJobRunner(definition, emulator, self.job_folder)

    @cached_property
    def sfn(self) -> Any:
        """One Step Functions client for the emulator's own polling (created once the endpoint is set)."""
        return boto3.client("stepfunctions")

    # -- EventBridge's part --------------------------------------------------------------
    def reconcile_ended(self, execution: dict[str, Any]) -> dict[str, Any] | None:
        """Deliver "Step Functions Execution Status Change" for an execution that ended badly."""
        if execution["status"] not in {"FAILED", "TIMED_OUT", "ABORTED"}:
            return None
        detail = {
            k: execution.get(k)
            for k in ("executionArn", "stateMachineArn", "name", "status", "input", "error", "cause")
        }
        event = {"source": "aws.states", "detail-type": "Step Functions Execution Status Change", "detail": detail}
        return self.invoke_async("reconcile", event)

    def alerts_for(self, experiment_id: str) -> list[dict[str, Any]]:
        """The alerts captured so far that name this experiment (subject, parsed message)."""
        self._drain_alerts()
        return [alert for alert in self._alerts if _names(alert, experiment_id)]

    def _drain_alerts(self) -> None:
        sqs = boto3.client("sqs")
        while batch := sqs.receive_message(QueueUrl=self.alert_queue_url, MaxNumberOfMessages=10).get("Messages"):
            for message in batch:
                envelope = json.loads(message["Body"])
                alert = {"subject": envelope.get("Subject"), "message": _maybe_json(envelope.get("Message", ""))}
                self._alerts.append(alert)
                sqs.delete_message(QueueUrl=self.alert_queue_url, ReceiptHandle=message["ReceiptHandle"])


class InjectedLambdaFault(RuntimeError):
    """The error an injected Lambda fault raises (it reaches Step Functions as the function's error)."""


class _LocalContext:
    """The fields of a Lambda context object that Powertools reads."""

    def __init__(self, function_name: str) -> None:
        self.function_name = function_name
        self.memory_limit_in_mb = 256
        self.invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function_name}"
        self.aws_request_id = "local"


def _names(alert: dict[str, Any], experiment_id: str) -> bool:
    """Whether an alert is about this experiment: its own id field, not a mention (a sweep's alert lists its points)."""
    message = alert.get("message")
    if isinstance(message, dict) and "experiment_id" in message:
        return message["experiment_id"] == experiment_id
    return experiment_id in json.dumps(alert)  # AlertRaw carries the raw state, with no id field of its own


def _placeholder_zip() -> bytes:
    """moto wants a code package; the real handler runs in-process instead."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("README.txt", "codeclab local mode runs the handlers from lambdas/ in-process")
    return buffer.getvalue()


def _maybe_json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text
