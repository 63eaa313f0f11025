"""The real Lambda handlers, Powertools and all, against moto."""

from __future__ import annotations

import json
from collections.abc import Mapping
from types import ModuleType

import boto3
import pytest

from codeclab.experiments.ids import experiment_id_for, new_experiment_id
from codeclab.experiments.limits import CODEC_CAPS
from codeclab.experiments.spec import SpecError
from codeclab.experiments.store import ExperimentKey, ExperimentStore
from codeclab.worker.entrypoint import main as worker_main
from tests.aws.conftest import BUCKET, TABLE, FakeContext, spec

EXECUTION_PREFIX = "arn:aws:states:us-east-1:123456789012:execution:codeclab"


def create(
    handlers: Mapping[str, ModuleType], context: FakeContext, spec_data: dict | None = None, name: str | None = None
) -> dict:
    name = name or new_experiment_id()
    event = {
        "input": {"spec": spec_data or spec()},
        "execution_arn": f"{EXECUTION_PREFIX}:{name}",
        "execution_name": name,
    }
    return handlers["create_record"].handler(event, context)


def store() -> ExperimentStore:
    return ExperimentStore(TABLE)


def item_of(record: dict) -> dict:
    return store().get(ExperimentKey.of(record))


def test_create_record_queues_the_experiment_and_stages_the_spec(handlers, context) -> None:
    record = create(handlers, context)
    assert record["created"] is True and record["codec"] == "jpeg"
    assert record["timeout_seconds"] == 900 and record["stall_seconds"] == 120
    assert record["run_timeout_seconds"] == 3 * 900 + 1800 + 600  # every attempt + the wait for capacity
    assert record["command"] == [record["spec_uri"], "--out", record["artifact_prefix"]]
    assert record["result_uri"] == f"s3://{BUCKET}/experiments/{record['experiment_id']}/result.json"
    staged = boto3.client("s3").get_object(Bucket=BUCKET, Key=f"experiments/{record['experiment_id']}/spec.json")
    assert json.loads(staged["Body"].read())["codec"]["params"] == {"quality": 50}
    item = item_of(record)
    assert item["status"] == "QUEUED" and item["execution_arn"].endswith(record["experiment_id"])


def test_timeout_is_capped_by_the_stack_setting(handlers, context) -> None:
    record = create(handlers, context, {**spec(), "limits": {"timeout_seconds": 86400}})
    assert record["timeout_seconds"] == 3600
    short = create(handlers, context, {**spec(), "limits": {"timeout_seconds": 10}})
    assert short["timeout_seconds"] == 60  # Batch's minimum attempt duration


def test_a_duplicate_create_record_is_idempotent(handlers, context) -> None:
    name = new_experiment_id()
    first, second = create(handlers, context, name=name), create(handlers, context, name=name)
    assert (first["created"], second["created"]) == (True, False)
    assert (first["experiment_id"], first["timestamp"]) == (second["experiment_id"], second["timestamp"])
    assert len(boto3.resource("dynamodb").Table(TABLE).scan()["Items"]) == 1


def test_an_invalid_spec_writes_nothing(handlers, context) -> None:
    with pytest.raises(SpecError, match=r"\$\.codec\.params\.quality: 101 is greater than the maximum of 100"):
        create(handlers, context, spec(quality=101))
    assert boto3.resource("dynamodb").Table(TABLE).scan()["Items"] == []


def test_create_record_refuses_a_codec_limit_over_the_cap_too(handlers, context, monkeypatch) -> None:
    """An execution started without the API (the console, an old CLI) meets the same caps before any job."""
    monkeypatch.setenv(CODEC_CAPS["cpu_seconds"].env, "900")
    with pytest.raises(SpecError, match=r"\$\.limits\.codec\.cpu_seconds: 901 is over this deployment's cap of 900"):
        create(handlers, context, {**spec(), "limits": {"codec": {"cpu_seconds": 901}}})
    assert boto3.resource("dynamodb").Table(TABLE).scan()["Items"] == []
    assert create(handlers, context, {**spec(), "limits": {"codec": {"cpu_seconds": 900}}})["created"] is True


def test_a_console_execution_gets_an_id_derived_from_its_arn(handlers, context) -> None:
    arn = f"{EXECUTION_PREFIX}:my-console-run"
    event = {"input": spec(), "execution_arn": arn, "execution_name": "my-console-run"}  # the spec pasted alone
    record = handlers["create_record"].handler(event, context)
    assert record["experiment_id"] == experiment_id_for(arn)


def run_worker_into(prefix: str) -> None:
    spec_uri = f"{prefix}/spec.json"
    assert worker_main([spec_uri, "--out", prefix, "--no-vmaf", "--quiet"]) == 0


def test_record_result_reads_the_workers_result(handlers, context) -> None:
    record = create(handlers, context)
    run_worker_into(record["artifact_prefix"])
    event = {**{k: record[k] for k in ("experiment_id", "timestamp", "result_uri")}, "job_id": "job-7"}
    outcome = handlers["record_result"].handler(event, context)
    assert outcome["status"] == "SUCCEEDED" and "PSNR-YUV" in outcome["summary"]
    item = item_of(record)
    assert item["status"] == "SUCCEEDED" and item["job_id"] == "job-7"
    assert item["result"]["metrics"]["bpp"] > 0 and item["result"]["frames"] == 4
    assert item["artifacts"]["recon.y4m"] == f"{record['artifact_prefix']}/recon.y4m"


def test_record_result_after_reconcile_aborted_leaves_aborted(handlers, context) -> None:
    record = create(handlers, context)
    run_worker_into(record["artifact_prefix"])
    aborted = {
        "detail": {
            "executionArn": f"{EXECUTION_PREFIX}:{record['experiment_id']}",
            "name": record["experiment_id"],
            "status": "ABORTED",
        }
    }
    assert handlers["reconcile"].handler(aborted, context)["status"] == "ABORTED"
    event = {k: record[k] for k in ("experiment_id", "timestamp", "result_uri")}
    assert handlers["record_result"].handler(event, context)["status"] == "ABORTED"
    item = item_of(record)
    assert item["status"] == "ABORTED" and "result" not in item


def test_mark_failed_classifies_a_batch_failure(handlers, context) -> None:
    record = create(handlers, context)
    cause = json.dumps(
        {"JobId": "j", "StatusReason": "Essential container in task exited", "Container": {"ExitCode": 3}}
    )
    event = {
        "input": {"record": record, "error": {"Error": "States.TaskFailed", "Cause": cause}},
        "execution_arn": f"{EXECUTION_PREFIX}:{record['experiment_id']}",
    }
    outcome = handlers["mark_failed"].handler(event, context)
    assert (outcome["status"], outcome["error_type"]) == ("FAILED", "STALLED")
    assert outcome["alert_subject"].startswith("codeclab FAILED STALLED exp_")
    item = item_of(record)
    assert item["status"] == "FAILED" and item["error"]["type"] == "STALLED" and item["error"]["cause"] == cause


def test_mark_failed_prefers_the_workers_own_verdict(handlers, context, tmp_path) -> None:
    record = create(handlers, context, {**spec(), "source": {"clip": "builtin:carphone", "start": 500}})
    assert worker_main([record["spec_uri"], "--out", record["artifact_prefix"], "--quiet"]) == 2
    cause = json.dumps({"JobId": "j", "Container": {"ExitCode": 2}})
    event = {"input": {"record": record, "error": {"Error": "States.TaskFailed", "Cause": cause}}, "execution_arn": ""}
    outcome = handlers["mark_failed"].handler(event, context)
    assert outcome["error_type"] == "INVALID_INPUT"
    assert outcome["message"] == "$.source.start: no frames at or after frame 500; the clip is shorter"


def test_mark_failed_on_a_timeout_is_timed_out(handlers, context) -> None:
    record = create(handlers, context)
    event = {"input": {"record": record, "error": {"Error": "States.Timeout", "Cause": ""}}, "execution_arn": ""}
    assert handlers["mark_failed"].handler(event, context)["status"] == "TIMED_OUT"
    assert item_of(record)["status"] == "TIMED_OUT"


def test_mark_failed_without_a_record_writes_it_failed_and_alerts(handlers, context) -> None:
    name = new_experiment_id()
    cause = json.dumps(
        {"errorMessage": "invalid spec: $.name: 'name' is a required property", "errorType": "SpecError"}
    )
    event = {
        "input": {"input": {}, "error": {"Error": "SpecError", "Cause": cause}},
        "execution_arn": f"{EXECUTION_PREFIX}:{name}",
    }
    outcome = handlers["mark_failed"].handler(event, context)
    assert outcome["error_type"] == "INVALID_INPUT" and outcome["experiment_id"] == name
    assert "'name' is a required property" in outcome["alert_message"]
    item = store().find(name)  # the id the caller was given now exists, final, with what was submitted
    assert item["status"] == "FAILED" and item["error"]["type"] == "INVALID_INPUT" and item["spec"] == {"input": {}}


def test_mark_failed_finds_a_record_whose_create_step_failed_late(handlers, context) -> None:
    record = create(handlers, context)  # the item exists, but $.record never reached the state
    event = {
        "input": {"error": {"Error": "S3.ServiceException", "Cause": "boom"}},
        "execution_arn": f"{EXECUTION_PREFIX}:{record['experiment_id']}",
    }
    assert handlers["mark_failed"].handler(event, context)["status"] == "FAILED"
    assert item_of(record)["status"] == "FAILED"


@pytest.mark.parametrize(
    ("status", "final"), [("ABORTED", "ABORTED"), ("TIMED_OUT", "TIMED_OUT"), ("FAILED", "FAILED")]
)
def test_reconcile_finalises_what_no_catch_saw(handlers, context, status: str, final: str) -> None:
    record = create(handlers, context)
    event = {
        "detail": {
            "executionArn": f"{EXECUTION_PREFIX}:{record['experiment_id']}",
            "name": record["experiment_id"],
            "status": status,
        }
    }
    outcome = handlers["reconcile"].handler(event, context)
    assert outcome == {"experiment_id": record["experiment_id"], "status": final, "changed": True, "codec": "jpeg"}
    assert item_of(record)["status"] == final
    again = handlers["reconcile"].handler(event, context)
    assert again["changed"] is False


def test_reconcile_leaves_a_final_record_alone(handlers, context) -> None:
    record = create(handlers, context)
    run_worker_into(record["artifact_prefix"])
    handlers["record_result"].handler({k: record[k] for k in ("experiment_id", "timestamp", "result_uri")}, context)
    event = {"detail": {"executionArn": "arn:x", "name": record["experiment_id"], "status": "FAILED"}}
    assert handlers["reconcile"].handler(event, context)["status"] == "SUCCEEDED"


def test_reconcile_uses_the_arn_for_console_executions(handlers, context) -> None:
    arn = f"{EXECUTION_PREFIX}:console-run-2"
    handlers["create_record"].handler(
        {"input": spec(), "execution_arn": arn, "execution_name": "console-run-2"}, context
    )
    event = {"detail": {"executionArn": arn, "name": "console-run-2", "status": "ABORTED"}}
    assert handlers["reconcile"].handler(event, context)["status"] == "ABORTED"


def test_reconcile_writes_the_record_an_execution_stopped_before_create_record(handlers, context) -> None:
    name = new_experiment_id()
    detail = {"executionArn": f"{EXECUTION_PREFIX}:{name}", "name": name, "status": "ABORTED"}
    event = {"detail": {**detail, "input": json.dumps({"spec": spec()})}}
    outcome = handlers["reconcile"].handler(event, context)
    assert outcome == {"experiment_id": name, "status": "ABORTED", "changed": True, "codec": "jpeg"}
    item = store().find(name)
    assert item["status"] == "ABORTED" and item["spec"]["codec"]["name"] == "jpeg"
    assert handlers["reconcile"].handler(event, context)["changed"] is False  # no second alert


def test_the_worker_marks_running_and_records_progress(handlers, context, monkeypatch) -> None:
    record = create(handlers, context)
    monkeypatch.setenv("CODECLAB_TABLE", TABLE)
    monkeypatch.setenv("CODECLAB_EXPERIMENT_ID", record["experiment_id"])
    monkeypatch.setenv("CODECLAB_TIMESTAMP", str(record["timestamp"]))
    run_worker_into(record["artifact_prefix"])
    item = item_of(record)
    assert item["status"] == "RUNNING"
    assert item["progress"]["stage"] == "metrics" and item["progress"]["frames_done"] == 4
    handlers["record_result"].handler({k: record[k] for k in ("experiment_id", "timestamp", "result_uri")}, context)
    assert [h["status"] for h in item_of(record)["history"]] == ["QUEUED", "RUNNING", "SUCCEEDED"]


def test_reconcile_after_an_alerted_failure_finalises_silently_with_the_workers_verdict(handlers, context) -> None:
    record = create(handlers, context)
    result = {"status": "FAILED", "error": {"type": "CODEC_ERROR", "message": "the decoder rejected frame 3"}}
    bucket, key = record["result_uri"].removeprefix("s3://").split("/", 1)
    boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=json.dumps(result).encode())
    detail = {"executionArn": f"{EXECUTION_PREFIX}:{record['experiment_id']}", "name": record["experiment_id"]}
    # MarkFailed itself failed, so AlertRaw sent the alert and the execution ended in the Fail state
    event = {"detail": {**detail, "status": "FAILED", "error": "ExperimentFailed", "cause": "see the alert"}}
    sent = []
    handlers["reconcile"].services.sns.publish = lambda **kwargs: sent.append(kwargs)
    outcome = handlers["reconcile"].handler(event, context)
    assert outcome["status"] == "FAILED" and outcome["changed"] is True
    assert item_of(record)["error"]["type"] == "CODEC_ERROR"
    assert sent == []  # the one alert was AlertRaw's
