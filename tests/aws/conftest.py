"""moto stands in for AWS: the table is created from the synthesized template's own definition."""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Iterator, Mapping
from types import ModuleType
from typing import Any

import boto3
import pytest
from moto import mock_aws

from codeclab.experiments.limits import CODEC_CAPS, CODEC_CAPS_OUTPUT
from codeclab.experiments.services import Services
from codeclab.experiments.store import ExperimentStore
from tests.conftest import REPO

TABLE, BUCKET = "experiments-test", "artifacts-test"
# The deployed stack's caps on limits.codec, as its CodecCaps output publishes them (the job's variables).
STACK_CODEC_CAPS = {cap.env: str(value) for cap, value in zip(CODEC_CAPS.values(), (1200, 1200, 8 << 30), strict=True)}
LAMBDA_ENV = {
    "TABLE_NAME": TABLE,
    "ARTIFACT_BUCKET": BUCKET,
    "MAX_TIMEOUT_SECONDS": "3600",
    "MAX_SWEEP_CONCURRENCY": "4",
    "POWERTOOLS_SERVICE_NAME": "codeclab",
    "POWERTOOLS_METRICS_NAMESPACE": "codeclab",
    "POWERTOOLS_TRACE_DISABLED": "1",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture
def aws(table_definition: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in LAMBDA_ENV.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        boto3.client("dynamodb").create_table(TableName=TABLE, BillingMode="PAY_PER_REQUEST", **table_definition)
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        topic = boto3.client("sns").create_topic(Name="alerts-test")["TopicArn"]
        monkeypatch.setenv("ALERT_TOPIC_ARN", topic)
        yield


@pytest.fixture
def state_machine_arn(aws: None, monkeypatch: pytest.MonkeyPatch) -> str:
    definition = {"StartAt": "Wait", "States": {"Wait": {"Type": "Pass", "End": True}}}
    arn = boto3.client("stepfunctions").create_state_machine(
        name="codeclab-test", definition=json.dumps(definition), roleArn="arn:aws:iam::123456789012:role/sfn"
    )["stateMachineArn"]
    monkeypatch.setenv("STATE_MACHINE_ARN", arn)
    return arn


@pytest.fixture
def services(aws: None) -> Services:
    return Services(
        store=ExperimentStore(TABLE),
        bucket=BUCKET,
        max_timeout_seconds=3600,
        alert_topic_arn=os.environ["ALERT_TOPIC_ARN"],
    )


class Handlers(Mapping[str, ModuleType]):
    """The real handler modules, each imported afresh inside the mock (so its module-scope clients are mocked)
    the first time a test asks for it: a test pays only for the handlers it calls."""

    NAMES = ("create_record", "create_point", "record_result", "mark_failed", "aggregate_sweep", "reconcile", "api")

    def __init__(self) -> None:
        self._loaded: dict[str, ModuleType] = {}

    def __getitem__(self, name: str) -> ModuleType:
        if name not in self.NAMES:
            raise KeyError(name)
        if name not in self._loaded:
            sys.path.insert(0, str(REPO / "lambdas"))
            try:
                self._loaded[name] = importlib.reload(importlib.import_module(name))
            finally:
                sys.path.remove(str(REPO / "lambdas"))
        return self._loaded[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.NAMES)

    def __len__(self) -> int:
        return len(self.NAMES)


@pytest.fixture
def handlers(aws: None, state_machine_arn: str) -> Handlers:
    return Handlers()


@pytest.fixture
def stack(state_machine_arn: str) -> str:
    """A stack named Codeclab in moto's CloudFormation, with the outputs codeclab looks a deployed stack up by."""
    outputs = {
        "TableName": TABLE,
        "ArtifactBucketName": BUCKET,
        "StateMachineArn": state_machine_arn,
        CODEC_CAPS_OUTPUT: json.dumps(STACK_CODEC_CAPS),
    }
    template = {
        "Resources": {"Handle": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
        "Outputs": {key: {"Value": value} for key, value in outputs.items()},
    }
    boto3.client("cloudformation").create_stack(StackName="Codeclab", TemplateBody=json.dumps(template))
    return "Codeclab"


class FakeContext:
    """The Lambda context object's shape (Powertools reads these fields)."""

    function_name = "codeclab-test"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:codeclab-test"
    aws_request_id = "req-1"


@pytest.fixture
def context() -> FakeContext:
    return FakeContext()


def spec(**codec_params: Any) -> dict[str, Any]:
    return {
        "name": "carphone-jpeg",
        "source": {"clip": "builtin:carphone", "frames": 4},
        "codec": {"name": "jpeg", "params": codec_params or {"quality": 50}},
    }


os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
