"""AWS faults injected at the boto3 layer: the caller sees the service's own error, for as many calls as the
plan in force says."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, EndpointConnectionError

from codeclab.local import aws_faults
from codeclab.local.fault_matrix import SDK_TRIES
from codeclab.local.faults import AwsFault, FaultPlan, FaultState

# Nothing listens here: a call that gets past the injector fails to connect instead.
NOWHERE = "http://127.0.0.1:9"
NO_RETRIES = Config(retries={"max_attempts": 0, "total_max_attempts": 1}, connect_timeout=1)


@pytest.fixture
def faults(monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultState]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    state = FaultState()
    aws_faults.install(state.take_aws)
    yield state
    aws_faults.uninstall()


def error_code(call: object) -> str:
    with pytest.raises(ClientError) as raised:
        call()  # type: ignore[operator]
    return str(raised.value.response["Error"]["Code"])


def test_a_json_protocol_call_gets_the_error_planned_then_goes_through(faults: FaultState) -> None:
    client = boto3.client("dynamodb", endpoint_url=NOWHERE, region_name="eu-west-1", config=NO_RETRIES)
    put = lambda: client.put_item(TableName="t", Item={"k": {"S": "v"}})  # noqa: E731
    with faults.injecting(
        FaultPlan(aws=(AwsFault("dynamodb", "PutItem", "ProvisionedThroughputExceededException", times=2),))
    ):
        assert [error_code(put), error_code(put)] == ["ProvisionedThroughputExceededException"] * 2
        with pytest.raises(EndpointConnectionError):
            put()
    assert faults.aws_fired == ["dynamodb.PutItem ProvisionedThroughputExceededException"] * 2


def test_a_query_protocol_call_gets_the_error_with_its_status(faults: FaultState) -> None:
    client = boto3.client("sns", endpoint_url=NOWHERE, region_name="eu-west-1", config=NO_RETRIES)
    failing = FaultPlan(aws=(AwsFault("sns", "Publish", "InternalError", http_status=500),))
    with faults.injecting(failing), pytest.raises(ClientError) as raised:
        client.publish(TopicArn="arn:aws:sns:eu-west-1:123456789012:t", Message="m")
    assert raised.value.response["Error"]["Code"] == "InternalError"
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500


def test_other_operations_and_faults_left_after_the_plan_are_untouched(faults: FaultState) -> None:
    client = boto3.client("dynamodb", endpoint_url=NOWHERE, region_name="eu-west-1", config=NO_RETRIES)
    refused = FaultPlan(aws=(AwsFault("dynamodb", "UpdateItem", "ConditionalCheckFailedException"),))
    with faults.injecting(refused), pytest.raises(EndpointConnectionError):
        client.get_item(TableName="t", Key={"k": {"S": "v"}})
    with pytest.raises(EndpointConnectionError):  # the plan ended with its fault unspent: nothing is left armed
        client.update_item(TableName="t", Key={"k": {"S": "v"}}, UpdateExpression="SET a = :a",
                           ExpressionAttributeValues={":a": {"S": "b"}})  # fmt: skip
    assert faults.aws_fired == []


def test_the_sdk_makes_as_many_tries_as_the_matrix_assumes(faults: FaultState) -> None:
    """The matrix's throttling rows are sized on boto3's default retry policy; this pins it."""
    throttled = AwsFault("dynamodb", "PutItem", "ProvisionedThroughputExceededException", times=SDK_TRIES + 1)
    client = boto3.client("dynamodb", endpoint_url=NOWHERE, region_name="eu-west-1")  # default retry policy
    with faults.injecting(FaultPlan(aws=(throttled,))):
        assert error_code(lambda: client.put_item(TableName="t", Item={"k": {"S": "v"}})).startswith("ProvisionedThr")
    assert len(faults.aws_fired) == SDK_TRIES
