"""AWS faults injected at the boto3 layer: the caller sees the service's own error, for as many calls as armed."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, EndpointConnectionError

from codeclab.local.aws_faults import AwsFault, AwsFaultInjector
from codeclab.local.fault_matrix import SDK_TRIES

# Nothing listens here: a call that gets past the injector fails to connect instead.
NOWHERE = "http://127.0.0.1:9"
NO_RETRIES = Config(retries={"max_attempts": 0, "total_max_attempts": 1}, connect_timeout=1)


@pytest.fixture
def injector(monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsFaultInjector]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    faults = AwsFaultInjector()
    faults.install()
    yield faults
    faults.uninstall()


def error_code(call: object) -> str:
    with pytest.raises(ClientError) as raised:
        call()  # type: ignore[operator]
    return str(raised.value.response["Error"]["Code"])


def test_a_json_protocol_call_gets_the_error_armed_then_goes_through(injector: AwsFaultInjector) -> None:
    injector.arm(AwsFault("dynamodb", "PutItem", "ProvisionedThroughputExceededException", times=2))
    client = boto3.client("dynamodb", endpoint_url=NOWHERE, region_name="eu-west-1", config=NO_RETRIES)
    put = lambda: client.put_item(TableName="t", Item={"k": {"S": "v"}})  # noqa: E731
    assert [error_code(put), error_code(put)] == ["ProvisionedThroughputExceededException"] * 2
    with pytest.raises(EndpointConnectionError):
        put()
    assert injector.fired == ["dynamodb.PutItem ProvisionedThroughputExceededException"] * 2


def test_a_query_protocol_call_gets_the_error_with_its_status(injector: AwsFaultInjector) -> None:
    injector.arm(AwsFault("sns", "Publish", "InternalError", http_status=500))
    client = boto3.client("sns", endpoint_url=NOWHERE, region_name="eu-west-1", config=NO_RETRIES)
    with pytest.raises(ClientError) as raised:
        client.publish(TopicArn="arn:aws:sns:eu-west-1:123456789012:t", Message="m")
    assert raised.value.response["Error"]["Code"] == "InternalError"
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500


def test_other_operations_and_disarmed_faults_are_untouched(injector: AwsFaultInjector) -> None:
    injector.arm(AwsFault("dynamodb", "UpdateItem", "ConditionalCheckFailedException"))
    client = boto3.client("dynamodb", endpoint_url=NOWHERE, region_name="eu-west-1", config=NO_RETRIES)
    with pytest.raises(EndpointConnectionError):
        client.get_item(TableName="t", Key={"k": {"S": "v"}})
    injector.disarm()
    with pytest.raises(EndpointConnectionError):
        client.update_item(TableName="t", Key={"k": {"S": "v"}}, UpdateExpression="SET a = :a",
                           ExpressionAttributeValues={":a": {"S": "b"}})  # fmt: skip
    assert injector.fired == []


def test_the_sdk_makes_as_many_tries_as_the_matrix_assumes(injector: AwsFaultInjector) -> None:
    """The matrix's throttling rows are sized on boto3's default retry policy; this pins it."""
    injector.arm(AwsFault("dynamodb", "PutItem", "ProvisionedThroughputExceededException", times=SDK_TRIES + 1))
    client = boto3.client("dynamodb", endpoint_url=NOWHERE, region_name="eu-west-1")  # default retry policy
    assert error_code(lambda: client.put_item(TableName="t", Item={"k": {"S": "v"}})).startswith("ProvisionedThr")
    assert len(injector.fired) == SDK_TRIES
