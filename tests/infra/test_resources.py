"""The synthesized resources: table, buckets, GPU Batch, handlers, API, alarms and rules."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Match

from codeclab.experiments.api_contract import SPEC_COMPONENT
from codeclab.experiments.limits import CODEC_CAPS, CODEC_CAPS_OUTPUT
from stacks.api_model import request_models
from tests.infra.synthesis import Synthesized, synthesize

HANDLERS = {
    "CreateRecord": "create_record.handler",
    "CreatePoint": "create_point.handler",
    "RecordResult": "record_result.handler",
    "MarkFailed": "mark_failed.handler",
    "AggregateSweep": "aggregate_sweep.handler",
    "Reconcile": "reconcile.handler",
    "Api": "api.handler",
}
# Least privilege on the table, per handler (the brief's table; the API also cancels, which updates the item).
TABLE_ACTIONS = {
    "CreateRecord": {"dynamodb:PutItem", "dynamodb:Query", "dynamodb:UpdateItem"},  # UpdateItem: sweep -> RUNNING
    "CreatePoint": {"dynamodb:PutItem", "dynamodb:Query"},  # Query: its sweep's status, and its own record
    "RecordResult": {"dynamodb:UpdateItem", "dynamodb:GetItem", "dynamodb:Query"},
    "MarkFailed": {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:GetItem", "dynamodb:Query"},
    "AggregateSweep": {"dynamodb:UpdateItem", "dynamodb:GetItem", "dynamodb:Query"},
    "Reconcile": {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:GetItem", "dynamodb:Query"},
    "Api": {"dynamodb:GetItem", "dynamodb:Query", "dynamodb:UpdateItem"},
}


def statements_of(synth: Synthesized, role_id: str) -> list[dict[str, Any]]:
    policies = [p for p in synth.of_type("AWS::IAM::Policy").values() if {"Ref": role_id} in p["Properties"]["Roles"]]
    return [s for p in policies for s in p["Properties"]["PolicyDocument"]["Statement"]]


def actions_of(statements: list[dict[str, Any]], prefix: str) -> set[str]:
    actions = set()
    for statement in statements:
        listed = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        actions.update(a for a in listed if a.startswith(prefix))
    return actions


def test_table_keys_index_and_protection(synth):
    synth.template.has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "KeySchema": [
                {"AttributeName": "experiment_id", "KeyType": "HASH"},
                {"AttributeName": "timestamp", "KeyType": "RANGE"},
            ],
            "AttributeDefinitions": Match.array_with(
                [
                    {"AttributeName": "experiment_id", "AttributeType": "S"},
                    {"AttributeName": "timestamp", "AttributeType": "N"},
                    {"AttributeName": "status", "AttributeType": "S"},
                    {"AttributeName": "parent_id", "AttributeType": "S"},
                    {"AttributeName": "point_index", "AttributeType": "N"},
                ]
            ),
            "BillingMode": "PAY_PER_REQUEST",
            "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
            "SSESpecification": {"SSEEnabled": True},
            "GlobalSecondaryIndexes": [
                Match.object_like(
                    {
                        "IndexName": "by_status",
                        "KeySchema": [
                            {"AttributeName": "status", "KeyType": "HASH"},
                            {"AttributeName": "timestamp", "KeyType": "RANGE"},
                        ],
                    }
                ),
                Match.object_like(
                    {
                        "IndexName": "by_parent",
                        "KeySchema": [
                            {"AttributeName": "parent_id", "KeyType": "HASH"},
                            {"AttributeName": "point_index", "KeyType": "RANGE"},
                        ],
                    }
                ),
            ],
        },
    )


def test_buckets_are_private_encrypted_and_ssl_only(synth):
    buckets = synth.of_type("AWS::S3::Bucket")
    assert len(buckets) == 2
    for bucket in buckets.values():
        props = bucket["Properties"]
        assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }
    ssl_only = {
        policy["Properties"]["Bucket"]["Ref"]
        for policy in synth.of_type("AWS::S3::BucketPolicy").values()
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
        if s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    }
    assert ssl_only == set(buckets)


def test_artifact_bucket_logs_access_and_ages_out(synth):
    artifacts = synth.resources[synth.logical_id(synth.stack.storage.bucket)]["Properties"]
    assert artifacts["LoggingConfiguration"]["DestinationBucketName"] == {
        "Ref": synth.logical_id(synth.stack.storage.logs_bucket)
    }
    rules = {r["Id"]: r for r in artifacts["LifecycleConfiguration"]["Rules"]}
    assert rules["experiments-to-infrequent-access"]["Transitions"][0]["TransitionInDays"] == 30
    assert rules["abort-incomplete-uploads"]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 7}


def test_topic_is_kms_encrypted(synth):
    _, topic = synth.only("AWS::SNS::Topic")
    assert "Fn::GetAtt" in topic["Properties"]["KmsMasterKeyId"]


def test_job_definition_has_one_gpu_and_retries_only_lost_hosts(synth):
    _, job = synth.only("AWS::Batch::JobDefinition")
    container = job["Properties"]["ContainerProperties"]
    requirements = {r["Type"]: r["Value"] for r in container["ResourceRequirements"]}
    assert requirements["GPU"] == "1"
    assert requirements["VCPU"] == "4"
    assert 14 * 1024 <= int(requirements["MEMORY"]) <= 15 * 1024
    assert container["Command"] == ["--help"]
    # the worker writes RUNNING and its progress to the experiment's item in this table
    table = synth.logical_id(synth.stack.storage.table)
    assert sorted(container["Environment"], key=lambda v: v["Name"]) == [
        {"Name": "CODECLAB_CODEC_MAX_CPU_SECONDS", "Value": "21600"},  # caps on a spec's limits.codec (cdk.json)
        {"Name": "CODECLAB_CODEC_MAX_MEMORY_BYTES", "Value": str(64 << 30)},
        {"Name": "CODECLAB_CODEC_MAX_WALL_SECONDS", "Value": "21600"},
        {"Name": "CODECLAB_SANDBOX_SCRATCH", "Value": "/sandbox"},
        {"Name": "CODECLAB_TABLE", "Value": {"Ref": table}},
    ]
    retry = job["Properties"]["RetryStrategy"]
    assert retry["Attempts"] == 3
    *retries, last = retry["EvaluateOnExit"]
    assert retries and all(r == {"Action": "RETRY", "OnStatusReason": "Host EC2*"} for r in retries)
    assert last == {"Action": "EXIT", "OnReason": "*"}


def test_the_functions_that_check_a_spec_get_the_jobs_caps_and_the_stack_publishes_them(synth):
    """One set of caps on limits.codec: the worker's, the API's and CreateRecord's, and `submit --stack`'s."""
    _, job = synth.only("AWS::Batch::JobDefinition")
    job_env = {v["Name"]: v["Value"] for v in job["Properties"]["ContainerProperties"]["Environment"]}
    caps = {cap.env: job_env[cap.env] for cap in CODEC_CAPS.values()}
    assert caps == {
        "CODECLAB_CODEC_MAX_WALL_SECONDS": "21600",
        "CODECLAB_CODEC_MAX_CPU_SECONDS": "21600",
        "CODECLAB_CODEC_MAX_MEMORY_BYTES": str(64 << 30),
    }
    for function in (synth.stack.handlers.api, synth.stack.handlers.create_record):
        variables = synth.resources[synth.logical_id(function)]["Properties"]["Environment"]["Variables"]
        assert {name: variables[name] for name in caps} == caps
    assert json.loads(synth.template.to_json()["Outputs"][CODEC_CAPS_OUTPUT]["Value"]) == caps


def test_codec_children_get_a_size_capped_tmpfs_because_docker_lets_them_mount_none(synth):
    _, job = synth.only("AWS::Batch::JobDefinition")
    (tmpfs,) = job["Properties"]["ContainerProperties"]["LinuxParameters"]["Tmpfs"]
    assert tmpfs == {"ContainerPath": "/sandbox", "Size": 512, "MountOptions": ["noexec", "nosuid", "nodev"]}


def test_job_role_reaches_only_the_experiments_prefix_and_the_table(synth):
    statements = statements_of(synth, synth.logical_id(synth.stack.gpu.job_role))
    assert actions_of(statements, "dynamodb:") == {"dynamodb:GetItem", "dynamodb:UpdateItem"}
    object_resources = [s["Resource"] for s in statements if "s3:PutObject" in s["Action"]]
    assert object_resources == [
        {"Fn::Join": ["", [{"Fn::GetAtt": [synth.logical_id(synth.stack.storage.bucket), "Arn"]}, "/experiments/*"]]}
    ]


def test_queue_cancels_jobs_stuck_without_capacity(synth):
    _, queue = synth.only("AWS::Batch::JobQueue")
    actions = queue["Properties"]["JobStateTimeLimitActions"]
    capacity = [a for a in actions if a["Reason"].startswith("CAPACITY")]
    assert capacity == [
        {
            "Action": "CANCEL",
            "State": "RUNNABLE",
            "MaxTimeSeconds": 1800,
            "Reason": "CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY",
        }
    ]
    assert all(a["Action"] == "CANCEL" and a["State"] == "RUNNABLE" for a in actions)


def test_compute_environment_is_on_demand_g5_g6_by_default(synth):
    _, environment = synth.only("AWS::Batch::ComputeEnvironment")
    resources = environment["Properties"]["ComputeResources"]
    assert resources["Type"] == "EC2"
    assert resources["InstanceTypes"] == ["g5.xlarge", "g5.2xlarge", "g6.xlarge", "g6.2xlarge"]
    assert resources["MinvCpus"] == 0
    assert resources["MaxvCpus"] == 16
    assert resources["Ec2Configuration"] == [{"ImageType": "ECS_AL2023_NVIDIA"}]
    template_id = resources["LaunchTemplate"]["LaunchTemplateId"]["Ref"]
    assert resources["LaunchTemplate"]["Version"] == {"Fn::GetAtt": [template_id, "LatestVersionNumber"]}
    metadata = synth.resources[template_id]["Properties"]["LaunchTemplateData"]["MetadataOptions"]
    assert metadata == {"HttpEndpoint": "enabled", "HttpTokens": "required", "HttpPutResponseHopLimit": 1}


def test_no_nat_gateway_and_flow_logs(synth):
    assert not synth.of_type("AWS::EC2::NatGateway")
    assert len(synth.of_type("AWS::EC2::FlowLog")) == 1
    (group,) = synth.of_type("AWS::EC2::SecurityGroup").values()
    assert "SecurityGroupIngress" not in group["Properties"]


def test_context_switches_to_spot_and_sets_limits(tmp_path):
    # Strings, as `cdk -c useSpot=true` passes them.
    spot = synthesize(tmp_path, {"useSpot": "true", "maxVcpus": "32", "runnableTimeoutSeconds": "900"})
    _, environment = spot.only("AWS::Batch::ComputeEnvironment")
    resources = environment["Properties"]["ComputeResources"]
    assert resources["Type"] == "SPOT"
    assert resources["AllocationStrategy"] == "SPOT_PRICE_CAPACITY_OPTIMIZED"
    assert resources["MaxvCpus"] == 32
    _, queue = spot.only("AWS::Batch::JobQueue")
    assert {a["MaxTimeSeconds"] for a in queue["Properties"]["JobStateTimeLimitActions"]} == {900}


def test_handlers_run_python311_x86_with_powertools_and_tracing(synth):
    functions = {synth.logical_id(f): name for name, f in synth.stack.handlers.all.items()}
    assert len(synth.of_type("AWS::Lambda::Function")) == len(HANDLERS)
    for logical_id, name in functions.items():
        props = synth.resources[logical_id]["Properties"]
        assert props["Handler"] == HANDLERS[name]
        assert props["Runtime"] == "python3.11"
        assert props["Architectures"] == ["x86_64"]
        assert props["TracingConfig"] == {"Mode": "Active"}
        (layer,) = props["Layers"]
        assert ":017000801446:layer:AWSLambdaPowertoolsPythonV3-python311-x86_64:27" in str(layer)
        env = props["Environment"]["Variables"]
        assert {"TABLE_NAME", "ARTIFACT_BUCKET", "MAX_TIMEOUT_SECONDS", "ALERT_TOPIC_ARN"} <= set(env)
        assert env["POWERTOOLS_SERVICE_NAME"] == env["POWERTOOLS_METRICS_NAMESPACE"] == "codeclab"
        assert ("STATE_MACHINE_ARN" in env) == (name == "Api")


@pytest.mark.parametrize("name", HANDLERS)
def test_each_handler_gets_only_its_table_actions(synth, name):
    function = synth.stack.handlers.all[name]
    statements = statements_of(synth, synth.logical_id(function.role))
    assert actions_of(statements, "dynamodb:") == TABLE_ACTIONS[name]
    assert not actions_of(statements, "s3:DeleteObject")


def test_api_uses_iam_auth_everywhere_and_validates_new_specs(synth):
    methods = synth.of_type("AWS::ApiGateway::Method")
    assert len(methods) == 4
    for method in methods.values():
        if method["Properties"]["HttpMethod"] != "OPTIONS":
            assert method["Properties"]["AuthorizationType"] == "AWS_IAM"
    resources = synth.of_type("AWS::ApiGateway::Resource")
    (experiments_id,) = [k for k, r in resources.items() if r["Properties"]["PathPart"] == "experiments"]
    (post,) = [
        m["Properties"]
        for m in methods.values()
        if m["Properties"]["ResourceId"] == {"Ref": experiments_id} and m["Properties"]["HttpMethod"] == "POST"
    ]
    assert "RequestValidatorId" in post
    assert set(post["RequestModels"]) == {"application/json"}
    _, model = synth.only("AWS::ApiGateway::Model")
    assert model["Properties"]["Schema"] == request_models()[SPEC_COMPONENT]
    paths = {r["Properties"]["PathPart"] for r in resources.values()}
    assert paths == {"experiments", "{id}", "cancel"}


def test_api_stage_logs_and_traces(synth):
    synth.template.has_resource_properties(
        "AWS::ApiGateway::Stage",
        {"StageName": "v1", "TracingEnabled": True, "AccessLogSetting": Match.object_like({})},
    )


def test_failed_executions_reach_reconcile_with_a_dead_letter_queue(synth):
    reconcile_id = synth.logical_id(synth.stack.handlers.reconcile)
    rules = synth.of_type("AWS::Events::Rule").values()
    (rule,) = [r["Properties"] for r in rules if r["Properties"]["EventPattern"]["source"] == ["aws.states"]]
    pattern = rule["EventPattern"]
    assert pattern["detail-type"] == ["Step Functions Execution Status Change"]
    assert sorted(pattern["detail"]["status"]) == ["ABORTED", "FAILED", "TIMED_OUT"]
    assert pattern["detail"]["stateMachineArn"] == [{"Ref": synth.logical_id(synth.stack.workflow.state_machine)}]
    (target,) = rule["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [reconcile_id, "Arn"]}
    assert "DeadLetterConfig" in target and "RetryPolicy" in target


def test_failed_batch_jobs_reach_the_topic(synth):
    topic = {"Ref": synth.logical_id(synth.stack.alerts.topic)}
    rules = synth.of_type("AWS::Events::Rule").values()
    (rule,) = [r["Properties"] for r in rules if r["Properties"]["EventPattern"]["source"] == ["aws.batch"]]
    assert rule["EventPattern"]["detail-type"] == ["Batch Job State Change"]
    assert rule["EventPattern"]["detail"]["status"] == ["FAILED"]
    assert [t["Arn"] for t in rule["Targets"]] == [topic]


def test_every_alarm_notifies_the_topic(synth):
    topic = {"Ref": synth.logical_id(synth.stack.alerts.topic)}
    alarms = [a["Properties"] for a in synth.of_type("AWS::CloudWatch::Alarm").values()]
    assert all(a["AlarmActions"] == [topic] for a in alarms)
    state_metrics = {a["MetricName"] for a in alarms if a.get("Namespace") == "AWS/States"}
    assert state_metrics == {"ExecutionsFailed", "ExecutionsTimedOut", "ExecutionsAborted"}
    errors = [
        a["Dimensions"][0]["Value"]
        for a in alarms
        if a.get("Namespace") == "AWS/Lambda" and a["MetricName"] == "Errors"
    ]
    assert sorted(e["Ref"] for e in errors) == sorted(synth.logical_id(f) for f in synth.stack.handlers.all.values())
    assert any(a.get("Namespace") == "AWS/Events" for a in alarms)  # failed Batch jobs


def test_outputs(synth):
    outputs = synth.template.to_json()["Outputs"]
    expected = {"ApiUrl", "StateMachineArn", "TableName", "ArtifactBucketName", "AlertTopicArn", CODEC_CAPS_OUTPUT}
    assert expected <= set(outputs)


def test_reconcile_may_publish_the_alert_for_what_it_finalises(synth):
    statements = statements_of(synth, synth.logical_id(synth.stack.handlers.reconcile.role))
    assert actions_of(statements, "sns:") == {"sns:Publish"}
    assert {"kms:Decrypt", "kms:GenerateDataKey"} <= actions_of(statements, "kms:")
