"""Least privilege, "no secrets in logs": credentials and signed-request material never reach a log or artifact.

The emulator's processes get canary credentials (distinctive values for the access key id, secret key and
session token), every Python logger is set to DEBUG and every Powertools knob that prints more is turned on
(POWERTOOLS_LOG_LEVEL=DEBUG, POWERTOOLS_LOGGER_LOG_EVENT, POWERTOOLS_DEV). Real experiments (one succeeding,
one crashing), the API handler and `codeclab serve` then run, and every channel is searched: log records of
all loggers, stdout and stderr, the Batch job logs, the artifacts (runs/ and every S3 object), the DynamoDB
table, the SNS alerts and the Step Functions history. None may hold a canary, nor the shape of signed
material whose value nobody knows in advance (botocore's signatures). Each test also checks that the canary
really was used (the requests in-process were signed with it, the worker's environment held it, the API
event was logged whole), so a leak could not hide behind canaries that never reached anything.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import traceback
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import pytest

from codeclab.experiments.redaction import REDACTED, redact_signed_material, without_caller_credentials
from codeclab.local import emulator, runner
from codeclab.local.emulator import LocalCloud
from codeclab.local.http_api import ApiServer
from codeclab.local.jobs import WARM_WORKERS_ENV

# POWERTOOLS_DEV is on here on purpose (it prints every API event); Powertools warns about it.
pytestmark = pytest.mark.filterwarnings("ignore:POWERTOOLS_DEV environment variable is enabled")

# The emulator's own credentials (those of every process it starts).
KEY_ID = "AKIACANARY0EMULATOR1"
SECRET_KEY = "canary/EmulatorSecretAccessKey+0000000001"
SESSION_TOKEN = "CanaryEmulatorSessionToken//0000000000000000000000000000000001"
# A caller's, as API Gateway passes them to the API handler; the signature is the caller's, not computable here.
CALLER_KEY_ID = "ASIACANARY0CALLER002"
CALLER_TOKEN = "CanaryCallerSessionToken//0000000000000000000000000000000002"
CALLER_SIGNATURE = "cafe0000" * 8
# moto's Step Functions signs the calls its own integrations make (lambda:Invoke, sns:Publish) with this key.
MOTO_OWN_KEY_ID = "ak"
# Not a secret: who called. It is logged with the event, which shows the event really was logged.
CALLER_ARN = "arn:aws:sts::123456789012:assumed-role/canary-caller/session"
SECRETS = (KEY_ID, SECRET_KEY, SESSION_TOKEN, CALLER_KEY_ID, CALLER_TOKEN, CALLER_SIGNATURE)
CANARY_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": KEY_ID,
    "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
    "AWS_SESSION_TOKEN": SESSION_TOKEN,
}
# Signed material whatever its value: an Authorization value, a signature, a session token, a credential scope.
_VALUE = r"(?>['\"]?\s*[:=]\s*b?['\"]?)"  # atomic: a redacted value cannot match by giving back its quote
SIGNED_SHAPES = (
    re.compile(rf"authorization{_VALUE}(?!{REDACTED})\w", re.IGNORECASE),
    re.compile(rf"signature{_VALUE}[0-9a-f]{{16,}}", re.IGNORECASE),
    re.compile(rf"x-amz-security-token{_VALUE}(?!{REDACTED})[\w/+]", re.IGNORECASE),
    re.compile(r"credential=(?!<)\w{16,}/", re.IGNORECASE),
)
SERVICE_LOGGER = "codeclab"  # Powertools' Logger is the Python logger named after POWERTOOLS_SERVICE_NAME
DEBUG_KNOBS = {"POWERTOOLS_LOG_LEVEL": "DEBUG", "POWERTOOLS_LOGGER_LOG_EVENT": "true", "POWERTOOLS_DEV": "true"}


def leaks(text: str) -> list[str]:
    """Every canary and every piece of signed material in the text."""
    found = [secret for secret in SECRETS if secret in text]
    return found + [match.group(0) for shape in SIGNED_SHAPES for match in shape.finditer(text)]


def assert_no_leaks(channels: dict[str, str]) -> None:
    found = {name: leaks(text) for name, text in channels.items()}
    assert not {name: hits for name, hits in found.items() if hits}, "secrets in logs or artifacts"


# -- capturing -----------------------------------------------------------------------------------------------
class EveryRecord(logging.Handler):
    """On the root logger: each record in full (message, arguments, extra fields, traceback), whatever formats it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            parts = [record.name, record.levelname, record.getMessage(), repr(vars(record))]
            if record.exc_info:
                parts.append("".join(traceback.format_exception(*record.exc_info)))
            self.records.append(" ".join(parts))
        except Exception:
            self.handleError(record)

    @property
    def text(self) -> str:
        return "\n".join(self.records)


@contextmanager
def every_logger_at_debug() -> Iterator[None]:
    loggers = [logging.root, *(lg for lg in logging.root.manager.loggerDict.values() if isinstance(lg, logging.Logger))]
    saved = [(lg, lg.level) for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        for lg, level in saved:
            lg.setLevel(level)


@contextmanager
def powertools_writing_to_stdout(service: str) -> Iterator[None]:
    """Powertools' handler keeps the sys.stdout it found when it was set up (pytest's, by then replaced):
    point it at file descriptor 1, as in Lambda, so capfd sees what it writes."""
    handlers = [h for h in logging.getLogger(service).handlers if isinstance(h, logging.StreamHandler)]
    assert handlers, f"no Powertools handler on the {service!r} logger"
    with open(1, "w", closefd=False) as stdout:
        previous = [h.setStream(stdout) for h in handlers]
        try:
            yield
        finally:
            for handler, old in zip(handlers, previous, strict=True):
                handler.setStream(old)


class Capture:
    def __init__(self, records: EveryRecord, capfd: pytest.CaptureFixture[str]) -> None:
        self.records, self.capfd = records, capfd

    def channels(self) -> dict[str, str]:
        out, err = self.capfd.readouterr()
        return {"log records": self.records.text, "stdout": out, "stderr": err}


class WorkerEnvironments:
    """The environment of every worker process started, as the job runner passes it to Popen."""

    def __init__(self) -> None:
        self.seen: list[dict[str, str]] = []

    def popen(self) -> type[subprocess.Popen[bytes]]:
        seen = self.seen

        class RecordingPopen(subprocess.Popen):  # type: ignore[type-arg]
            def __init__(self, args: Any, *rest: Any, **kwargs: Any) -> None:
                if "codeclab.worker" in list(args):
                    seen.append(dict(kwargs.get("env") or {}))
                super().__init__(args, *rest, **kwargs)

        return RecordingPopen


class SignedRequests:
    """Each request sent in this process, by service, with its headers (a botocore before-send hook)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str]]] = []

    def __call__(self, request: Any, event_name: str, **_: Any) -> None:
        service = event_name.split(".")[1]  # before-send.SERVICE.OPERATION
        self.requests.append(
            (service, {k: v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()})
        )


# -- fixtures ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def workers() -> WorkerEnvironments:
    return WorkerEnvironments()


@pytest.fixture(scope="module")
def signed() -> SignedRequests:
    return SignedRequests()


@pytest.fixture(scope="module")
def cloud(workers: WorkerEnvironments, signed: SignedRequests) -> Iterator[LocalCloud]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(emulator, "CREDENTIALS", CANARY_CREDENTIALS)
        for name, value in DEBUG_KNOBS.items():
            patch.setenv(name, value)
        patch.setattr(subprocess, "Popen", workers.popen())
        # Every job started cold, so that each worker's environment passes through Popen to be seen here (a warm
        # one gets the same environment on its stdin: tests/local/test_standby.py)
        patch.setenv(WARM_WORKERS_ENV, "0")
        # A fresh default session: an earlier test's would still hold the credentials it resolved then.
        patch.setattr(boto3, "DEFAULT_SESSION", None)
        boto3.setup_default_session()
        boto3.DEFAULT_SESSION.events.register("before-send", signed)  # type: ignore[union-attr]
        powertools_logger = logging.getLogger(SERVICE_LOGGER)
        level = powertools_logger.level  # Powertools sets it once per process; later modules' emulators keep theirs
        with LocalCloud(quiet=False) as local:
            local.invoke_handler("api", api_event("GET", "/experiments"))  # sets up Powertools' logger
            yield local
        powertools_logger.setLevel(level)


@pytest.fixture
def capture(cloud: LocalCloud, capfd: pytest.CaptureFixture[str]) -> Iterator[Capture]:
    records = EveryRecord()
    assert cloud.lambda_environment["POWERTOOLS_SERVICE_NAME"] == SERVICE_LOGGER
    with every_logger_at_debug(), powertools_writing_to_stdout(SERVICE_LOGGER):
        logging.root.addHandler(records)
        try:
            yield Capture(records, capfd)
        finally:
            logging.root.removeHandler(records)


# -- what a run leaves ---------------------------------------------------------------------------------------
def spec() -> dict[str, Any]:
    return {
        "name": "canary",
        "source": {"clip": "builtin:carphone", "frames": 1},
        "codec": {"name": "jpeg", "params": {"quality": 50}},
        "limits": {"timeout_seconds": 60, "stall_seconds": 30},
        "metrics": {"vmaf": False},
    }


def files_under(folder: Path) -> dict[str, str]:
    return {str(p): p.read_bytes().decode("utf-8", "replace") for p in sorted(folder.rglob("*")) if p.is_file()}


def every_s3_object() -> dict[str, str]:
    s3, objects = boto3.client("s3"), {}
    for bucket in s3.list_buckets()["Buckets"]:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket["Name"]):
            for item in page.get("Contents", []):
                body = s3.get_object(Bucket=bucket["Name"], Key=item["Key"])["Body"].read()
                objects[f"s3://{bucket['Name']}/{item['Key']}"] = body.decode("utf-8", "replace")
    return objects


def every_table_item(cloud: LocalCloud) -> str:
    pages = boto3.client("dynamodb").get_paginator("scan").paginate(TableName=cloud.table_name)
    return json.dumps([item for page in pages for item in page["Items"]], default=str)


def what_the_run_left(cloud: LocalCloud, outcome: runner.Outcome) -> dict[str, str]:
    history = cloud.sfn.get_execution_history(executionArn=outcome.record["execution_arn"], maxResults=1000)
    return {
        **files_under(outcome.folder),  # runner.collect: record.json, alerts.json, every artifact
        **files_under(cloud.job_folder),  # each Batch job's stdout and stderr
        **every_s3_object(),
        "dynamodb": every_table_item(cloud),
        "sns alerts": json.dumps(cloud.alerts_for(outcome.experiment_id), default=str),
        "execution history": json.dumps(history["events"], default=str),
    }


def assert_the_canaries_were_used(workers: WorkerEnvironments, signed: SignedRequests) -> None:
    """Without this, a clean result could only mean the canaries never reached anything."""
    assert workers.seen, "no worker process was started"
    for env in workers.seen:
        assert {k: env.get(k) for k in CANARY_CREDENTIALS} == CANARY_CREDENTIALS
    by_key: dict[str, list[tuple[str, dict[str, str]]]] = {}
    for service, headers in signed.requests:
        by_key.setdefault(headers["Authorization"].split("Credential=")[1].split("/")[0], []).append((service, headers))
    assert by_key.keys() <= {KEY_ID, MOTO_OWN_KEY_ID}
    assert {"dynamodb", "s3", "sfn", "sns"} <= {service for service, _ in by_key[KEY_ID]}
    assert all(headers["X-Amz-Security-Token"] == SESSION_TOKEN for _, headers in by_key[KEY_ID])


def assert_each_channel_was_captured(
    cloud: LocalCloud, outcome: runner.Outcome, channels: dict[str, str], handler_message: str
) -> None:
    """Each channel holds what it should, so an empty capture cannot pass for a clean one."""
    assert "CanonicalRequest" in channels["log records"]  # botocore's signer logged at DEBUG
    assert "Sending http request" in channels["log records"]  # and so did its sender, headers and all
    assert handler_message in channels["stdout"]  # a handler's Powertools line, on file descriptor 1
    assert str(cloud.job_log(outcome.experiment_id)) in channels
    assert str(outcome.folder / "worker.log") in channels and str(outcome.folder / "result.json") in channels


# -- the tests -----------------------------------------------------------------------------------------------
def test_a_successful_run_leaks_no_credentials(
    cloud: LocalCloud, capture: Capture, workers: WorkerEnvironments, signed: SignedRequests, tmp_path: Path
) -> None:
    outcome = runner.run(cloud, spec(), tmp_path)
    assert outcome.succeeded, outcome.record.get("error")
    channels = {**capture.channels(), **what_the_run_left(cloud, outcome)}
    assert_the_canaries_were_used(workers, signed)
    assert_each_channel_was_captured(cloud, outcome, channels, "result recorded")
    assert_no_leaks(channels)


def test_a_crashing_run_leaks_no_credentials_in_tracebacks_or_alerts(
    cloud: LocalCloud,
    capture: Capture,
    workers: WorkerEnvironments,
    signed: SignedRequests,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CODECLAB_FAULT", "crash:encode@1")
    outcome = runner.run(cloud, spec(), tmp_path)
    assert outcome.record["status"] == "FAILED" and outcome.record["error"]["type"] == "INTERNAL"
    channels = {**capture.channels(), **what_the_run_left(cloud, outcome)}
    assert_the_canaries_were_used(workers, signed)
    assert_each_channel_was_captured(cloud, outcome, channels, "experiment failed")
    assert "Traceback" in (outcome.folder / "worker.log").read_text()  # the error path was taken and logged
    assert outcome.alerts, "a failed run raises an alert"
    assert_no_leaks(channels)


# -- the API path --------------------------------------------------------------------------------------------
def caller_authorization() -> str:
    scope = f"{CALLER_KEY_ID}/20240101/us-east-1/execute-api/aws4_request"
    return f"AWS4-HMAC-SHA256 Credential={scope}, SignedHeaders=host;x-amz-date, Signature={CALLER_SIGNATURE}"


def signed_headers() -> dict[str, str]:
    return {
        "Authorization": caller_authorization(),
        "X-Amz-Security-Token": CALLER_TOKEN,
        "X-Amz-Date": "20240101T000000Z",
    }


def api_event(
    method: str, path: str, headers: dict[str, str] | None = None, query: dict[str, str] | None = None
) -> dict[str, Any]:
    """A REST API proxy event as API Gateway sends it for an AWS_IAM-signed request."""
    headers = headers or {}
    return {
        "httpMethod": method,
        "path": path,
        "resource": path,
        "headers": headers,
        "multiValueHeaders": {name: [value] for name, value in headers.items()},
        "queryStringParameters": query,
        "multiValueQueryStringParameters": {name: [value] for name, value in query.items()} if query else None,
        "pathParameters": None,
        "body": None,
        "isBase64Encoded": False,
        "requestContext": {
            "requestId": "canary-request",
            "stage": "prod",
            "identity": {"accessKey": CALLER_KEY_ID, "caller": "AROACANARY:session", "userArn": CALLER_ARN},
        },
    }


def presigned_query() -> dict[str, str]:
    """SigV4 in the query string instead of headers, as a presigned URL carries it."""
    credential = f"{CALLER_KEY_ID}/20240101/us-east-1/execute-api/aws4_request"
    return {"X-Amz-Credential": credential, "X-Amz-Signature": CALLER_SIGNATURE, "X-Amz-Security-Token": CALLER_TOKEN}


def test_the_api_handler_logs_no_caller_credentials(cloud: LocalCloud, capture: Capture) -> None:
    responses = [
        cloud.invoke_handler("api", api_event("GET", "/experiments", signed_headers(), {"status": "FAILED"})),
        cloud.invoke_handler("api", api_event("GET", "/experiments", {}, {"status": "FAILED", **presigned_query()})),
        cloud.invoke_handler("api", api_event("GET", "/experiments/exp_missing", signed_headers())),
        cloud.invoke_handler("api", api_event("POST", "/experiments", signed_headers())),  # no body: a 400
    ]
    assert [r["statusCode"] for r in responses] == [200, 200, 404, 400]
    channels = capture.channels()
    # POWERTOOLS_LOGGER_LOG_EVENT logged each event whole and POWERTOOLS_DEV printed it: the redaction was needed.
    assert CALLER_ARN in channels["log records"] and CALLER_ARN in channels["stdout"]
    assert_no_leaks(channels)


def get(url: str, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, headers=headers)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_serve_does_not_echo_signed_requests(cloud: LocalCloud, capture: Capture) -> None:
    presigned = urllib.parse.urlencode({"status": "FAILED", **presigned_query()})
    with ApiServer(lambda event: cloud.invoke_handler("api", event)) as server:  # as LocalService serves it
        assert get(f"{server.url}/experiments?status=FAILED", signed_headers()) == 200
        assert get(f"{server.url}/experiments?{presigned}", {}) == 200
    channels = capture.channels()
    assert '"GET /experiments' in channels["log records"]  # the access log was on and captured
    assert_no_leaks(channels)


# -- the redaction itself ------------------------------------------------------------------------------------
def test_redaction_covers_each_form_botocore_logs() -> None:
    forms = (
        f"headers={{'X-Amz-Security-Token': b'{SESSION_TOKEN}', 'Authorization': b'{caller_authorization()}'}}",
        f"CanonicalRequest:\nGET\n/\n\nhost:h\nx-amz-security-token:{SESSION_TOKEN}\n",
        f"Signature:\n{CALLER_SIGNATURE}",
        f'"GET /x?X-Amz-Credential={KEY_ID}%2F2024&X-Amz-Signature={CALLER_SIGNATURE} HTTP/1.1" 200',
    )
    for text in forms:
        assert leaks(text), text  # the check sees each form
        assert not leaks(redact_signed_material(text)), redact_signed_material(text)


def test_the_event_loses_only_the_callers_credentials() -> None:
    event = api_event("GET", "/experiments", {**signed_headers(), "Idempotency-Key": "k"})
    redacted = without_caller_credentials(event)
    assert redacted["headers"]["Idempotency-Key"] == "k" and redacted["headers"]["X-Amz-Date"] == "20240101T000000Z"
    assert redacted["requestContext"]["identity"]["userArn"] == CALLER_ARN
    assert not leaks(json.dumps(redacted))
    assert leaks(json.dumps(event)), "the caller's event is not changed"
    assert without_caller_credentials({"experiment_id": "x"}) == {"experiment_id": "x"}
