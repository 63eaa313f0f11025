"""`codeclab submit/status/list/cancel --stack`: the deployed stack found by its outputs (moto's CloudFormation)."""

from __future__ import annotations

import json

import boto3
from click.testing import CliRunner

from codeclab.cli import cli
from codeclab.experiments.ids import new_experiment_id
from tests.aws.conftest import spec

ANSWERED_BY_STACK = "answered by: stack Codeclab (us-east-1)"


def test_submit_starts_the_deployed_state_machine(stack, state_machine_arn, tmp_path) -> None:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec()))
    result = CliRunner().invoke(cli, ["submit", str(path), "--stack", stack, "--idempotency-key", "k-1"])
    assert result.exit_code == 0, result.output
    (execution,) = boto3.client("stepfunctions").list_executions(stateMachineArn=state_machine_arn)["executions"]
    assert execution["name"] in result.output and ANSWERED_BY_STACK in result.stderr


def test_a_codec_limit_over_the_stacks_cap_exits_2_before_anything_starts(stack, state_machine_arn, tmp_path) -> None:
    """The caps are the stack's own (its CodecCaps output), not this machine's defaults; the cap itself is accepted."""
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({**spec(), "limits": {"codec": {"wall_seconds": 1201}}}))
    result = CliRunner().invoke(cli, ["submit", str(path), "--stack", stack])
    assert result.exit_code == 2
    message = " ".join(result.stderr.split())
    assert "$.limits.codec.wall_seconds: 1201 is over this deployment's cap of 1200" in message
    assert "have the operator raise codecMaxWallSeconds in cdk.json's context" in message
    assert boto3.client("stepfunctions").list_executions(stateMachineArn=state_machine_arn)["executions"] == []
    path.write_text(json.dumps({**spec(), "limits": {"codec": {"wall_seconds": 1200}}}))
    assert CliRunner().invoke(cli, ["submit", str(path), "--stack", stack]).exit_code == 0


def test_status_list_and_cancel_read_the_deployed_table(stack, services) -> None:
    key, _ = services.store.create(
        new_experiment_id(),
        spec(),
        execution_arn="arn:aws:states:us-east-1:123456789012:execution:m:gone",
        codec="jpeg",
    )
    runner = CliRunner()
    status = runner.invoke(cli, ["status", key.experiment_id, "--stack", stack])
    assert key.experiment_id in status.stdout and ANSWERED_BY_STACK in status.stderr
    listed = runner.invoke(cli, ["list", "--status", "QUEUED", "--stack", stack])
    assert key.experiment_id in listed.stdout and ANSWERED_BY_STACK in listed.stderr
    assert runner.invoke(cli, ["list", "--stack", stack]).exit_code == 2  # the GSI needs a status
    cancelled = runner.invoke(cli, ["cancel", key.experiment_id, "--stack", stack])
    assert cancelled.exit_code == 0 and "ABORTED" in cancelled.stdout and ANSWERED_BY_STACK in cancelled.stderr
    again = runner.invoke(cli, ["cancel", key.experiment_id, "--stack", stack])
    assert again.exit_code == 1 and "already ended as ABORTED" in again.stderr


def test_an_unknown_id_or_stack_is_a_clear_error(stack) -> None:
    unknown = new_experiment_id()
    result = CliRunner().invoke(cli, ["status", unknown, "--stack", stack])
    assert result.exit_code == 1 and f"no experiment '{unknown}'" in result.stderr
    result = CliRunner().invoke(cli, ["status", unknown, "--stack", "Nope"])
    assert result.exit_code == 2 and "no stack 'Nope'" in " ".join(result.stderr.split())
