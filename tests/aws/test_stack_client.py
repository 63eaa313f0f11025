"""StackClient: a deployed stack found by its CloudFormation name, asked through the API's own logic (moto)."""

from __future__ import annotations

import json
import threading
import time

import boto3
import pytest

from codeclab.clients.base import Reason, Refused
from codeclab.clients.stack import StackClient, connect
from codeclab.experiments.ids import new_experiment_id
from codeclab.experiments.spec import Spec, validate_spec
from codeclab.experiments.statuses import Status
from codeclab.experiments.store import ExperimentKey
from tests.aws.conftest import spec

ANSWERED_BY = "stack Codeclab (us-east-1)"


@pytest.fixture
def client(stack: str) -> StackClient:
    return connect(stack)


def refusal(call, *args) -> Refused:
    with pytest.raises(Refused) as raised:
        call(*args)
    return raised.value


def test_a_stack_that_is_not_there_or_not_codeclabs_is_unavailable(aws) -> None:
    missing = refusal(connect, "Nope")
    assert missing.reason is Reason.UNAVAILABLE and "no stack 'Nope'" in missing.message
    template = {"Resources": {"Handle": {"Type": "AWS::CloudFormation::WaitConditionHandle"}}}
    boto3.client("cloudformation").create_stack(StackName="Other", TemplateBody=json.dumps(template))
    other = refusal(connect, "Other")
    assert other.reason is Reason.UNAVAILABLE
    assert "lacks the outputs ['ArtifactBucketName', 'StateMachineArn', 'TableName']" in other.message
    assert other.answered_by == "stack Other (us-east-1)"


def test_submit_starts_one_execution_named_after_the_experiment(client: StackClient, state_machine_arn: str) -> None:
    submission = client.submit(validate_spec(spec()), idempotency_key="k-1")
    assert submission.answered_by == ANSWERED_BY
    assert submission.status_url == f"/experiments/{submission.experiment_id}"
    assert client.submit(validate_spec(spec()), idempotency_key="k-1") == submission  # a retry starts nothing new
    (execution,) = boto3.client("stepfunctions").list_executions(stateMachineArn=state_machine_arn)["executions"]
    assert execution["name"] == submission.experiment_id and execution["executionArn"] == submission.execution_arn
    bad = refusal(client.submit, Spec({**spec(), "codec": {"name": "jpeg", "params": {"quality": 500}}}))  # unchecked
    assert bad.reason is Reason.INVALID and "$.codec.params.quality" in bad.message


def test_get_list_and_cancel_read_and_write_the_deployed_table(client: StackClient, services) -> None:
    sweep_id, done_id, queued_id = new_experiment_id(), new_experiment_id(), new_experiment_id()
    done, _ = services.store.create(done_id, spec(), parent_id=sweep_id, point_index=0, point_label="jpeg q=1")
    services.store.transition(done, Status.SUCCEEDED)
    manifest = [
        {"experiment_id": done_id, "index": 0, "label": "jpeg q=1"},
        {"experiment_id": queued_id, "index": 1, "label": "jpeg q=2"},
    ]  # the second has no record yet
    key = f"experiments/{sweep_id}/points.json"
    boto3.client("s3").put_object(Bucket=services.bucket, Key=key, Body=json.dumps(manifest).encode())
    services.store.create(sweep_id, spec(), execution_arn="arn:aws:states:us-east-1:123456789012:execution:m:gone",
                          point_count=2, manifest_uri=f"s3://{services.bucket}/{key}")  # fmt: skip

    record = client.get(sweep_id)
    assert record.experiment_id == sweep_id and record.status is Status.QUEUED and record.answered_by == ANSWERED_BY
    assert [(p["experiment_id"], p["status"]) for p in record.points] == [(done_id, "SUCCEEDED"), (queued_id, "QUEUED")]
    assert record.sweep is not None and record.sweep.counts == {"SUCCEEDED": 1, "QUEUED": 1}  # through by_parent
    assert refusal(client.get, new_experiment_id()).reason is Reason.NOT_FOUND

    assert [r["experiment_id"] for r in client.list(Status.QUEUED).records] == [sweep_id]
    assert refusal(client.list).reason is Reason.INVALID  # the status index needs a status

    cancelled = client.cancel(sweep_id)  # its execution is gone: the record is aborted at once
    assert (cancelled.status, cancelled.cancel_requested, cancelled.answered_by) == (Status.ABORTED, True, ANSWERED_BY)
    assert refusal(client.cancel, sweep_id).reason is Reason.ENDED
    assert refusal(client.cancel, new_experiment_id()).reason is Reason.NOT_FOUND


def test_wait_follows_the_record_until_it_is_final(client: StackClient, services) -> None:
    submission = client.submit(validate_spec(spec()))
    key, _ = services.store.create(submission.experiment_id, spec())  # CreateRecord's part

    def finish() -> None:
        time.sleep(1.5)
        services.store.transition(key, Status.SUCCEEDED)

    finisher = threading.Thread(target=finish)
    finisher.start()
    seen: list[str] = []
    record = client.wait(submission, lambda r: seen.append(r["status"]))
    finisher.join()
    assert record.status is Status.SUCCEEDED and record.answered_by == ANSWERED_BY
    assert seen[0] == "QUEUED" and seen[-1] == "SUCCEEDED"
    assert ExperimentKey.of(record.item) == key


def test_wait_refuses_an_execution_that_ended_without_a_record(client: StackClient) -> None:
    submission = client.submit(validate_spec(spec()))
    sfn = boto3.client("stepfunctions")
    sfn.stop_execution(executionArn=submission.execution_arn)
    # moto's interpreter runs the execution in a thread: it may end it before the stop lands, or a moment after
    # the stop returns. Either way it ends, and writes no record (no handlers run in these tests).
    deadline = time.monotonic() + 30
    while (ended := sfn.describe_execution(executionArn=submission.execution_arn)["status"]) == "RUNNING":
        assert time.monotonic() < deadline, "the stopped execution never ended"
        time.sleep(0.1)
    assert ended in {"ABORTED", "SUCCEEDED", "FAILED"}
    gone = refusal(client.wait, submission)
    assert gone.reason is Reason.NOT_FOUND and f"ended {ended} with no record" in gone.message
