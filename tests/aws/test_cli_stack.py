"""`codeclab submit/status/list/cancel --stack`: the deployed stack found by its outputs (moto's CloudFormation)."""

from __future__ import annotations

import json

import boto3
import pytest
from click.testing import CliRunner

from codeclab.cli import cli
from codeclab.experiments.ids import new_experiment_id
from tests.aws.conftest import BUCKET, TABLE, spec


@pytest.fixture
def stack(aws, state_machine_arn) -> str:
    outputs = {"TableName": TABLE, "ArtifactBucketName": BUCKET, "StateMachineArn": state_machine_arn}
    template = {
        "Resources": {"Handle": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
        "Outputs": {key: {"Value": value} for key, value in outputs.items()},
    }
    boto3.client("cloudformation").create_stack(StackName="Codeclab", TemplateBody=json.dumps(template))
    return "Codeclab"


def test_submit_starts_the_deployed_state_machine(stack, state_machine_arn, tmp_path) -> None:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec()))
    result = CliRunner().invoke(cli, ["submit", str(path), "--stack", stack, "--idempotency-key", "k-1"])
    assert result.exit_code == 0, result.output
    (execution,) = boto3.client("stepfunctions").list_executions(stateMachineArn=state_machine_arn)["executions"]
    assert execution["name"] in result.output


def test_status_list_and_cancel_read_the_deployed_table(stack, services) -> None:
    key, _ = services.store.create(
        new_experiment_id(),
        spec(),
        execution_arn="arn:aws:states:us-east-1:123456789012:execution:m:gone",
        codec="jpeg",
    )
    runner = CliRunner()
    assert key.experiment_id in runner.invoke(cli, ["status", key.experiment_id, "--stack", stack]).output
    assert key.experiment_id in runner.invoke(cli, ["list", "--status", "QUEUED", "--stack", stack]).output
    assert runner.invoke(cli, ["list", "--stack", stack]).exit_code == 2  # the GSI needs a status
    cancelled = runner.invoke(cli, ["cancel", key.experiment_id, "--stack", stack])
    assert cancelled.exit_code == 0 and "ABORTED" in cancelled.output


def test_an_unknown_stack_is_a_clear_error(aws) -> None:
    result = CliRunner().invoke(cli, ["status", new_experiment_id(), "--stack", "Nope"])
    assert result.exit_code == 2 and "no stack 'Nope'" in " ".join(result.output.split())
