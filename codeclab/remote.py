"""The deployed stack, found by name: its outputs become the same Services the Lambdas use."""

from __future__ import annotations

import boto3
from botocore.exceptions import ClientError

from codeclab.experiments.services import Services
from codeclab.experiments.store import ExperimentStore


class StackNotFound(LookupError):
    """No deployed stack of that name, or one without codeclab's outputs."""


def stack_outputs(stack_name: str) -> dict[str, str]:
    try:
        stacks = boto3.client("cloudformation").describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as exc:
        raise StackNotFound(f"no stack {stack_name!r} in this account and region: {exc}") from None
    return {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}


def stack_services(stack_name: str) -> Services:
    outputs = stack_outputs(stack_name)
    missing = {"TableName", "ArtifactBucketName", "StateMachineArn"} - set(outputs)
    if missing:
        raise StackNotFound(f"stack {stack_name!r} lacks the outputs {sorted(missing)}: is it a codeclab stack?")
    return Services(
        store=ExperimentStore(outputs["TableName"]),
        bucket=outputs["ArtifactBucketName"],
        state_machine_arn=outputs["StateMachineArn"],
        alert_topic_arn=outputs.get("AlertTopicArn", ""),
    )
