"""The synthesized state machine: its shape, timeouts, retries, and that every failure ends alerted and Failed."""

from __future__ import annotations

import re
from typing import Any

import pytest

from codeclab.experiments.error_types import ALERTED_FAILURE
from stacks.workflow import LAMBDA_TRANSIENT_ERRORS, PUBLISH_RETRY_ERRORS

LAMBDA_TASKS = ["CreateRecord", "RecordResult", "MarkFailed"]
GUARDED_TASKS = ["CreateRecord", "RunCodec", "RecordResult", "NotifySuccess", "RunPoints", "AggregateSweep"]
POINT_STATES = {"CreatePoint", "RunPoint", "RecordPointResult", "MarkPointFailed", "PointDone", "PointFailed"}


def states(definition: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return definition["States"]


def successors(state: dict[str, Any]) -> list[str]:
    nexts = [state["Next"]] if "Next" in state else []
    nexts += [catch["Next"] for catch in state.get("Catch", [])]
    nexts += [choice["Next"] for choice in state.get("Choices", [])]
    nexts += [state["Default"]] if "Default" in state else []
    return nexts


def paths_from(definition: dict[str, Any], start: str) -> list[list[str]]:
    """Every path from start to a terminal state (the failure side has no loops)."""
    state = states(definition)[start]
    following = successors(state)
    if not following:
        return [[start]]
    return [[start, *rest] for name in following for rest in paths_from(definition, name)]


def is_sns_publish(state: dict[str, Any]) -> bool:
    return state.get("Type") == "Task" and state.get("Resource", "").endswith(":states:::sns:publish")


def test_the_states_are_exactly_the_designed_ones(definition):
    assert definition["StartAt"] == "CreateRecord"
    assert set(states(definition)) == {
        "CreateRecord",
        "IsSweep",
        "RunCodec",
        "RecordResult",
        "RunPoints",
        "AggregateSweep",
        "Notify",
        "NotifySuccess",
        "Succeeded",
        "MarkFailed",
        "Alert",
        "AlertRaw",
        "Failed",
    }
    happy = [s for s in paths_from(definition, "CreateRecord") if "MarkFailed" not in s]
    assert happy == [
        ["CreateRecord", "IsSweep", "RunPoints", "AggregateSweep", "Notify", "NotifySuccess", "Succeeded"],
        ["CreateRecord", "IsSweep", "RunPoints", "AggregateSweep", "Notify", "Succeeded"],
        ["CreateRecord", "IsSweep", "RunCodec", "RecordResult", "Notify", "NotifySuccess", "Succeeded"],
        ["CreateRecord", "IsSweep", "RunCodec", "RecordResult", "Notify", "Succeeded"],
    ]
    assert states(definition)["IsSweep"]["Choices"] == [
        {"Variable": "$.record.sweep", "BooleanEquals": True, "Next": "RunPoints"}
    ]


def test_jsonpath_only_and_a_machine_level_timeout(definition):
    assert definition.get("QueryLanguage", "JSONPath") == "JSONPath"
    assert all(s.get("QueryLanguage", "JSONPath") == "JSONPath" for s in states(definition).values())
    # every attempt of the longest job, the wait for capacity and a margin, then room for the Lambda steps
    assert definition["TimeoutSeconds"] == 3 * 21600 + 1800 + 600 + 1800


def test_run_codec_submits_the_job_with_the_records_command_and_limits(definition):
    run = states(definition)["RunCodec"]
    assert run["Type"] == "Task"
    assert run["Resource"].endswith(":states:::batch:submitJob.sync")
    params = run["Parameters"]
    assert params["JobName.$"] == "$.record.job_name"
    assert params["ContainerOverrides"]["Command.$"] == "$.record.command"
    assert params["ContainerOverrides"]["Environment"] == [
        {"Name": "CODECLAB_EXPERIMENT_ID", "Value.$": "$.record.experiment_id"},
        {"Name": "CODECLAB_TIMESTAMP", "Value.$": "States.Format('{}', $.record.timestamp)"},
    ]
    assert params["Timeout"] == {"AttemptDurationSeconds.$": "$.record.timeout_seconds"}
    # the state outlasts Batch's own limits, so their precise reasons reach the record
    assert run["TimeoutSecondsPath"] == "$.record.run_timeout_seconds"
    assert "HeartbeatSeconds" not in run
    assert set(run["ResultSelector"]) == {"JobId.$", "JobName.$", "Status.$", "StatusReason.$"}
    assert run["ResultPath"] == "$.job"


def test_run_codec_retries_only_batch_api_errors(definition):
    (retry,) = states(definition)["RunCodec"]["Retry"]
    assert retry == {
        "ErrorEquals": ["Batch.AWSBatchException"],
        "IntervalSeconds": 5,
        "BackoffRate": 2,
        "MaxAttempts": 3,
    }


@pytest.mark.parametrize("name", LAMBDA_TASKS)
def test_lambda_tasks_retry_only_transient_errors(definition, name):
    state = states(definition)[name]
    assert state["Retry"] == [
        {"ErrorEquals": LAMBDA_TRANSIENT_ERRORS, "IntervalSeconds": 2, "BackoffRate": 2, "MaxAttempts": 4}
    ]
    assert state["TimeoutSeconds"] == 60


def test_lambda_payloads_and_result_paths(definition):
    create, record, mark = (states(definition)[n] for n in LAMBDA_TASKS)
    assert create["Parameters"] == {
        "input.$": "$",
        "execution_arn.$": "$$.Execution.Id",
        "execution_name.$": "$$.Execution.Name",
    }
    assert create["ResultPath"] == "$.record"
    assert record["Parameters"] == {
        "experiment_id.$": "$.record.experiment_id",
        "timestamp.$": "$.record.timestamp",
        "result_uri.$": "$.record.result_uri",
        "job_id.$": "$.job.JobId",
    }
    assert record["ResultPath"] == "$.result"
    assert mark["Parameters"] == {"input.$": "$", "execution_arn.$": "$$.Execution.Id"}
    assert mark["ResultPath"] == "$.failure"
    # payload_response_only: the function ARN itself is the resource, so ResultPath gets the handler's return.
    assert all(":states:::lambda:invoke" not in s["Resource"] for s in (create, record, mark))


def test_every_task_catches_everything_and_has_a_timeout(definition):
    tasks = {name: s for name, s in states(definition).items() if s["Type"] == "Task"}
    tasks |= {name: s for name, s in point_states(definition).items() if s["Type"] == "Task"}
    assert len(tasks) == 8 + 4
    for name, state in tasks.items():
        assert any(c["ErrorEquals"] == ["States.ALL"] for c in state.get("Catch", [])), name
        assert "TimeoutSeconds" in state or "TimeoutSecondsPath" in state, name


@pytest.mark.parametrize("name", GUARDED_TASKS)
def test_a_failing_step_goes_to_mark_failed_with_the_error(definition, name):
    (catch,) = states(definition)[name]["Catch"]
    assert catch == {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "MarkFailed"}


def test_every_failure_path_alerts_then_ends_failed(definition):
    failure_paths = paths_from(definition, "MarkFailed")
    assert {tuple(p) for p in failure_paths} >= {
        ("MarkFailed", "Alert", "Failed"),
        ("MarkFailed", "AlertRaw", "Failed"),
    }
    for path in failure_paths:
        assert any(is_sns_publish(states(definition)[name]) for name in path), path
        assert states(definition)[path[-1]]["Type"] == "Fail", path
    assert states(definition)["Failed"]["Error"] == ALERTED_FAILURE == "ExperimentFailed"  # Reconcile relies on it


def test_alerts_take_their_text_from_mark_failed_or_the_raw_state(definition):
    alert, raw = states(definition)["Alert"], states(definition)["AlertRaw"]
    assert alert["Parameters"]["Subject.$"] == "$.failure.alert_subject"
    assert alert["Parameters"]["Message.$"] == "$.failure.alert_message"
    assert raw["Parameters"]["Message.$"] == "States.JsonToString($)"
    assert states(definition)["MarkFailed"]["Catch"][0]["Next"] == "AlertRaw"


@pytest.mark.parametrize("name", ["Alert", "AlertRaw", "NotifySuccess"])
def test_every_publish_is_retried_except_after_a_timeout(definition, name):
    (retry,) = states(definition)[name]["Retry"]
    # States.TaskFailed matches any task error but States.Timeout, after which the message may have gone out
    assert retry == {"ErrorEquals": ["States.TaskFailed"], "IntervalSeconds": 2, "BackoffRate": 2, "MaxAttempts": 4}
    assert retry["ErrorEquals"] == PUBLISH_RETRY_ERRORS


def test_success_notification_only_when_asked(definition):
    notify = states(definition)["Notify"]
    (choice,) = notify["Choices"]
    assert {"Variable": "$.record.notify_on_success", "BooleanEquals": True} in choice["And"]
    assert choice["Next"] == "NotifySuccess"
    assert notify["Default"] == "Succeeded"
    assert states(definition)["NotifySuccess"]["Parameters"]["Message.$"] == "$.result.summary"


def test_logging_and_tracing(synth):
    _, machine = synth.only("AWS::StepFunctions::StateMachine")
    props = machine["Properties"]
    assert props["StateMachineType"] == "STANDARD"
    assert props["TracingConfiguration"] == {"Enabled": True}
    assert props["LoggingConfiguration"]["Level"] == "ALL"
    assert props["LoggingConfiguration"]["IncludeExecutionData"] is True
    (destination,) = props["LoggingConfiguration"]["Destinations"]
    group_id = destination["CloudWatchLogsLogGroup"]["LogGroupArn"]["Fn::GetAtt"][0]
    assert "KmsKeyId" in synth.resources[group_id]["Properties"]


def point_states(definition: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return states(definition)["RunPoints"]["ItemProcessor"]["States"]


def test_a_sweep_fans_out_with_a_distributed_map_that_reads_the_points_manifest(definition):
    fan_out = states(definition)["RunPoints"]
    assert fan_out["Type"] == "Map" and "ItemsPath" not in fan_out
    processor = fan_out["ItemProcessor"]
    # one STANDARD child execution per point: a point's job may outlast an Express child's five minutes
    assert processor["ProcessorConfig"] == {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}
    reader = fan_out["ItemReader"]
    assert reader["Resource"].endswith(":states:::s3:getObject") and reader["ReaderConfig"] == {"InputType": "JSON"}
    assert reader["Parameters"] == {"Bucket.$": "$.record.manifest.Bucket", "Key.$": "$.record.manifest.Key"}
    writer = fan_out["ResultWriter"]
    assert writer["Resource"].endswith(":states:::s3:putObject")
    assert writer["Parameters"]["Prefix"] == "experiments/map-runs"
    assert fan_out["MaxConcurrencyPath"] == "$.record.max_concurrency"
    assert fan_out["ItemSelector"] == {"point.$": "$$.Map.Item.Value"}
    assert fan_out["ResultPath"] is None  # the outcomes live in the points' records
    assert fan_out["Next"] == "AggregateSweep"
    assert processor["StartAt"] == "CreatePoint" and set(processor["States"]) == POINT_STATES
    create_point = processor["States"]["CreatePoint"]
    assert create_point["Parameters"] == {"point.$": "$.point"} and create_point["ResultPath"] == "$.record"
    assert create_point["Next"] == "RunPoint"


def test_each_point_runs_the_same_job_as_a_single_experiment(definition):
    run_point, run_codec = point_states(definition)["RunPoint"], states(definition)["RunCodec"]
    assert {k: v for k, v in run_point.items() if k not in {"Next", "Catch"}} == {
        k: v for k, v in run_codec.items() if k not in {"Next", "Catch"}
    }
    assert run_point["Next"] == "RecordPointResult"
    assert point_states(definition)["RecordPointResult"]["Next"] == "PointDone"


def test_a_failed_point_is_recorded_without_its_own_alert_and_the_map_goes_on(definition):
    inner = point_states(definition)
    for name in ("CreatePoint", "RunPoint", "RecordPointResult"):
        (catch,) = inner[name]["Catch"]
        assert catch == {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "MarkPointFailed"}
    mark = inner["MarkPointFailed"]
    assert mark["Parameters"] == {"input.$": "$", "execution_arn.$": "$$.Execution.Id"}
    assert mark["Next"] == "PointFailed" and mark["Catch"][0]["Next"] == "PointFailed"
    assert inner["PointFailed"]["Type"] == "Succeed" and inner["PointDone"]["Type"] == "Succeed"
    assert not any(is_sns_publish(state) for state in inner.values())


def test_aggregate_sweep_reads_the_parent_key_and_its_failure_is_the_sweeps_one_alert(definition):
    aggregate = states(definition)["AggregateSweep"]
    assert aggregate["Parameters"] == {"experiment_id.$": "$.record.experiment_id", "timestamp.$": "$.record.timestamp"}
    assert aggregate["ResultPath"] == "$.result"
    assert aggregate["Next"] == "Notify"
    assert states(definition)["Notify"]["Choices"][0]["Next"] == "NotifySuccess"


# -- the typed state payload ------------------------------------------------------------------------------------
PATH_KEYS = {"InputPath", "OutputPath", "ResultPath", "ItemsPath", "MaxConcurrencyPath", "TimeoutSecondsPath",
             "Variable"}  # fmt: skip


def state_paths(value: Any, key: str = "") -> list[str]:
    """Every JSONPath into the state payload that a state (or its Parameters) names; ResultSelector reads the
    task's own result, and "$$." the context object, so neither is the payload."""
    if isinstance(value, dict):
        return [p for k, v in value.items() if k != "ResultSelector" for p in state_paths(v, k)]
    if isinstance(value, list):
        return [p for v in value for p in state_paths(v, key)]
    if not isinstance(value, str) or not (key in PATH_KEYS or key.endswith(".$")):
        return []
    return re.findall(r"(?<!\$)\$\.[A-Za-z_][A-Za-z0-9_.]*", value)


def test_every_payload_path_of_the_synthesized_workflow_is_a_field_of_the_typed_state(definition) -> None:
    """The JSONPaths are built from the state's field names; this reads them back from the ASL to prove it."""
    from codeclab.experiments.state import ExecutionState, PointState, state_path

    points = states(definition)["RunPoints"]["ItemProcessor"]["States"]
    checked = 0
    for payload_type, group in ((ExecutionState, states(definition)), (PointState, points)):
        for state in group.values():
            body = {k: v for k, v in state.items() if k not in {"ItemProcessor", "ItemSelector"}}
            for path in state_paths(body):
                state_path(*path[2:].split("."), state=payload_type)  # raises StateFieldError if not a field
                checked += 1
    assert checked >= 25


def test_a_renamed_state_field_fails_at_synth_not_at_run_time() -> None:
    from codeclab.experiments.state import PointState, RecordResultEvent, StateFieldError, event_payload, state_path

    with pytest.raises(StateFieldError, match="no field 'run_timeout'"):
        state_path("record", "run_timeout", state=PointState)
    with pytest.raises(StateFieldError, match="RecordResultEvent has fields"):
        event_payload(RecordResultEvent, experiment_id="$.record.experiment_id", timestamp="$.record.timestamp")


# -- the Distributed Map's IAM ----------------------------------------------------------------------------------
def machine_statements(synth) -> list[dict[str, Any]]:
    role_id = synth.logical_id(synth.stack.workflow.state_machine.role)
    return [
        statement
        for policy in synth.of_type("AWS::IAM::Policy").values()
        if {"Ref": role_id} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def test_the_map_starts_its_children_on_this_machine_only_and_reaches_s3_only_under_experiments(synth):
    statements = machine_statements(synth)
    machine = {"Ref": synth.logical_id(synth.stack.workflow.state_machine)}
    (start,) = [s for s in statements if s["Action"] == "states:StartExecution"]
    assert start["Resource"] == machine
    listed = lambda s: s["Action"] if isinstance(s["Action"], list) else [s["Action"]]  # noqa: E731
    s3 = [s for s in statements if any(a.startswith("s3:") for a in listed(s))]
    objects = [s for s in s3 if "s3:GetObject" in s["Action"]]
    assert len(objects) == 1 and set(objects[0]["Action"]) >= {"s3:GetObject", "s3:PutObject"}
    assert objects[0]["Resource"]["Fn::Join"][1][-1] == "/experiments/*"  # never the bucket, never '*'
    assert all(s["Resource"] != "*" for s in s3)
