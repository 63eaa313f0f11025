"""The experiment workflow: CreateRecord -> RunCodec -> RecordResult -> Notify, and MarkFailed -> Alert on any error.

A sweep goes CreateRecord (which writes the points manifest) -> RunPoints (a Distributed Map reading the manifest:
one child execution per point, CreatePoint -> RunPoint -> RecordPointResult, MarkPointFailed on a point's error)
-> AggregateSweep -> Notify; AggregateSweep fails the sweep, with its one alert, when any point failed.

JSONPath throughout (no JSONata): the local emulator runs this same definition, and every state here is plain
Amazon States Language that it understands.
"""

from __future__ import annotations

from functools import partial
from typing import TypeVar

from aws_cdk import ArnFormat, Duration, Fn, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from codeclab.experiments.error_types import ALERTED_FAILURE
from codeclab.experiments.limits import run_codec_timeout
from codeclab.experiments.state import (
    AggregateSweepEvent,
    CreatePointEvent,
    CreateRecordEvent,
    JobOutcome,
    MarkFailedEvent,
    PointState,
    RecordResultEvent,
    event_payload,
    state_field,
    state_path,
)
from stacks.compute import GpuBatch
from stacks.lambdas import Handlers
from stacks.logs import EncryptedLogs
from stacks.monitoring import Alerts
from stacks.nag import acknowledge, resource_finding
from stacks.settings import Settings
from stacks.storage import EXPERIMENTS_PREFIX, Storage

ALL_ERRORS = ["States.ALL"]
# Transient faults of the Lambda service itself, and throttling that outlasted the SDK's own retries inside a
# handler (Lambda names the error after the exception class). Every handler is idempotent, so a retry is safe;
# any other exception of a handler is never retried.
LAMBDA_TRANSIENT_ERRORS = [
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
]
# Any failed publish (SNS throttling, an internal error) is retried: an alert is the one output that must not be
# lost. States.TaskFailed matches every task error except States.Timeout, whose publish may have gone out.
PUBLISH_RETRY_ERRORS = ["States.TaskFailed"]
STEP_TIMEOUT = sfn.Timeout.duration(Duration.seconds(60))
# Where each map run writes its own summary (<prefix>/<map run id>/manifest.json and result files). The Writer's
# parameters are read against the Map's output, not its input, so the prefix is fixed, inside experiments/.
MAP_RUNS_PREFIX = f"{EXPERIMENTS_PREFIX}map-runs"
# Machine-level limit: the longest RunCodec allowed plus room for the Lambda steps and the alerts.
# It ends only executions that no state-level timeout stopped; Reconcile then finalises their records.
MACHINE_SLACK_SECONDS = 1800
_Catching = TypeVar("_Catching", tasks.LambdaInvoke, tasks.SnsPublish, sfn.CustomState, sfn.DistributedMap)


class _ManifestReader(sfn.S3JsonItemReader):
    """The ItemReader, without CDK's grant: with a bucket path it grants S3 reads on '*'. `_grant_map_run` grants
    the experiments/ prefix of the one bucket instead."""

    def provide_policy_statements(self) -> list[iam.PolicyStatement]:
        return []


class _MapResultsWriter(sfn.ResultWriterV2):
    """The ResultWriter, without CDK's grant on '*' (see _ManifestReader)."""

    def provide_policy_statements(self) -> list[iam.PolicyStatement]:
        return []


class ExperimentWorkflow(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: Settings,
        handlers: Handlers,
        gpu: GpuBatch,
        alerts: Alerts,
        logs: EncryptedLogs,
        storage: Storage,
    ) -> None:
        super().__init__(scope, construct_id)
        self._topic = alerts.topic
        failed = sfn.Fail(
            self,
            "Failed",
            error=ALERTED_FAILURE,
            cause="The experiment did not succeed; its record and the alert give the error type and message.",
        )
        mark_failed = self._mark_failed(handlers.mark_failed, failed)
        notify = self._notify(mark_failed)
        single = (
            self._catch_into(self._run_codec(gpu, "RunCodec"), mark_failed)
            .next(self._catch_into(self._record_result(handlers.record_result, "RecordResult"), mark_failed))
            .next(notify)
        )
        sweep = (
            self._catch_into(self._run_points(handlers, gpu, storage.bucket), mark_failed)
            .next(self._catch_into(self._aggregate(handlers.aggregate_sweep), mark_failed))
            .next(notify)
        )
        # CreateRecord always sets record.sweep, so the Choice never looks up a missing path
        is_sweep = sfn.Choice(self, "IsSweep").when(
            sfn.Condition.boolean_equals(state_path("record", "sweep"), True), sweep
        )
        definition = self._catch_into(self._create_record(handlers.create_record), mark_failed).next(
            is_sweep.otherwise(single)
        )
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            state_machine_type=sfn.StateMachineType.STANDARD,
            definition_body=sfn.DefinitionBody.from_chainable(definition),
            timeout=Duration.seconds(
                run_codec_timeout(settings.max_timeout_seconds, settings.runnable_timeout_seconds)
                + MACHINE_SLACK_SECONDS
            ),
            tracing_enabled=True,
            logs=sfn.LogOptions(
                # The vendedlogs prefix keeps CloudWatch Logs' resource policy from growing with every log group.
                destination=logs.group(
                    self, "Logs", name=f"/aws/vendedlogs/states/{Stack.of(self).stack_name}-experiments"
                ),
                level=sfn.LogLevel.ALL,
                include_execution_data=True,
            ),
        )
        self._grant_batch(gpu)
        self._grant_map_run(storage)
        alerts.grant_publish(self.state_machine)
        self._acknowledge_wildcards(handlers)

    @property
    def executions_arn(self) -> str:
        """Every execution of this state machine (their names are experiment ids, minted at run time)."""
        return Stack.of(self).format_arn(
            service="states",
            resource="execution",
            resource_name=f"{self.state_machine.state_machine_name}:*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )

    def grant_executions(self, grantee: iam.IGrantable, *actions: str) -> None:
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(actions=list(actions), resources=[self.executions_arn])
        )

    def _create_record(self, function: lambda_.IFunction) -> tasks.LambdaInvoke:
        return self._invoke(
            "CreateRecord",
            function,
            event_payload(
                CreateRecordEvent, input="$", execution_arn="$$.Execution.Id", execution_name="$$.Execution.Name"
            ),
            result_path=state_path("record"),
        )

    def _run_points(self, handlers: Handlers, gpu: GpuBatch, bucket: s3.IBucket) -> sfn.DistributedMap:
        """One child execution per manifest item: its own record, job and result. A failed point is recorded and
        the Map goes on; only a child that ends without its Catch (aborted, timed out) counts as a failed item."""
        point_failed = sfn.Succeed(self, "PointFailed", comment="recorded as failed; AggregateSweep reports it")
        mark_point_failed = self._invoke(
            "MarkPointFailed",
            handlers.mark_failed,
            event_payload(MarkFailedEvent, input="$", execution_arn="$$.Execution.Id"),
            result_path=state_path("failure", state=PointState),
        )
        mark_point_failed.add_catch(
            point_failed, errors=ALL_ERRORS, result_path=state_path("mark_failed_error", state=PointState)
        )
        mark_point_failed.next(point_failed)
        create_point = self._invoke(
            "CreatePoint",
            handlers.create_point,
            event_payload(CreatePointEvent, point=state_path("point", state=PointState)),
            result_path=state_path("record", state=PointState),
        )
        iteration = (
            self._catch_into(create_point, mark_point_failed)
            .next(self._catch_into(self._run_codec(gpu, "RunPoint"), mark_point_failed))
            .next(self._catch_into(self._record_result(handlers.record_result, "RecordPointResult"), mark_point_failed))
            .next(sfn.Succeed(self, "PointDone"))
        )
        record = partial(state_path, "record")
        points = sfn.DistributedMap(
            self,
            "RunPoints",
            item_reader=_ManifestReader(
                bucket_name_path=sfn.JsonPath.string_at(record("manifest", "Bucket")),
                key=sfn.JsonPath.string_at(record("manifest", "Key")),
            ),
            # Only the map run's summary and manifest: the points' outcomes are in their own records.
            result_writer_v2=_MapResultsWriter(bucket=bucket, prefix=MAP_RUNS_PREFIX),
            max_concurrency_path=record("max_concurrency"),
            map_execution_type=sfn.StateMachineType.STANDARD,  # a point's job may outlast an Express child's 5 min
            # every child's state is a PointState that starts from its manifest entry
            item_selector={f"{state_field('point', PointState)}.$": "$$.Map.Item.Value"},
            result_path=sfn.JsonPath.DISCARD,
        )
        return points.item_processor(iteration)

    def _aggregate(self, function: lambda_.IFunction) -> tasks.LambdaInvoke:
        return self._invoke(
            "AggregateSweep",
            function,
            event_payload(
                AggregateSweepEvent,
                experiment_id=state_path("record", "experiment_id"),
                timestamp=state_path("record", "timestamp"),
            ),
            result_path=state_path("result"),
        )

    def _run_codec(self, gpu: GpuBatch, name: str) -> sfn.CustomState:
        record = partial(state_path, "record", state=PointState)  # RunCodec runs one point, alone or in the Map
        # A custom state because BatchSubmitJob renders task_timeout only as Batch's attempt duration; the
        # state's own TimeoutSecondsPath is what stops the workflow waiting on a job that never ends.
        state = sfn.CustomState(
            self,
            name,
            state_json={
                "Type": "Task",
                "Resource": f"arn:{Stack.of(self).partition}:states:::batch:submitJob.sync",
                "Parameters": {
                    "JobName.$": record("job_name"),
                    "JobQueue": gpu.queue.job_queue_arn,
                    "JobDefinition": gpu.job_definition.job_definition_arn,
                    "ContainerOverrides": {
                        "Command.$": record("command"),
                        "Environment": [
                            {"Name": "CODECLAB_EXPERIMENT_ID", "Value.$": record("experiment_id")},
                            {"Name": "CODECLAB_TIMESTAMP", "Value.$": f"States.Format('{{}}', {record('timestamp')})"},
                        ],
                    },
                    "Timeout": {"AttemptDurationSeconds.$": record("timeout_seconds")},
                },
                "TimeoutSecondsPath": record("run_timeout_seconds"),
                # Batch's DescribeJobs answer, cut to what MarkFailed's classification reads
                "ResultSelector": event_payload(
                    JobOutcome, JobId="$.JobId", JobName="$.JobName", Status="$.Status", StatusReason="$.StatusReason"
                ),
                "ResultPath": state_path("job", state=PointState),
            },
        )
        # Only Batch's API throttling or outage; a failed job goes to the Catch with Batch's own verdict.
        state.add_retry(
            errors=["Batch.AWSBatchException"], interval=Duration.seconds(5), backoff_rate=2, max_attempts=3
        )
        return state

    def _record_result(self, function: lambda_.IFunction, name: str) -> tasks.LambdaInvoke:
        return self._invoke(
            name,
            function,
            event_payload(
                RecordResultEvent,
                experiment_id=state_path("record", "experiment_id", state=PointState),
                timestamp=state_path("record", "timestamp", state=PointState),
                result_uri=state_path("record", "result_uri", state=PointState),
                job_id=state_path("job", "JobId", state=PointState),
            ),
            result_path=state_path("result", state=PointState),
        )

    def _notify(self, mark_failed: sfn.IChainable) -> sfn.Choice:
        succeeded = sfn.Succeed(self, "Succeeded")
        notify_success = self._catch_into(
            self._publish(
                "NotifySuccess",
                subject=sfn.JsonPath.format(
                    "codeclab SUCCEEDED {}", sfn.JsonPath.string_at(state_path("record", "experiment_id"))
                ),
                message=sfn.TaskInput.from_json_path_at(state_path("result", "summary")),
            ),
            mark_failed,
        )
        # is_present first: a Choice has no Catch, and a missing field would end the execution with a runtime error.
        wanted = sfn.Condition.and_(
            sfn.Condition.is_present(state_path("record", "notify_on_success")),
            sfn.Condition.boolean_equals(state_path("record", "notify_on_success"), True),
        )
        return sfn.Choice(self, "Notify").when(wanted, notify_success.next(succeeded)).otherwise(succeeded)

    def _mark_failed(self, function: lambda_.IFunction, failed: sfn.Fail) -> tasks.LambdaInvoke:
        mark_failed = self._invoke(
            "MarkFailed",
            function,
            event_payload(MarkFailedEvent, input="$", execution_arn="$$.Execution.Id"),
            result_path=state_path("failure"),
        )
        alert = self._publish(
            "Alert",
            subject=sfn.JsonPath.string_at(state_path("failure", "alert_subject")),
            message=sfn.TaskInput.from_json_path_at(state_path("failure", "alert_message")),
        )
        # When MarkFailed itself failed there is no $.failure to format, so the raw state goes out instead.
        alert_raw = self._publish(
            "AlertRaw",
            subject="codeclab FAILED and the record could not be updated",
            message=sfn.TaskInput.from_text(sfn.JsonPath.json_to_string(sfn.JsonPath.entire_payload)),
        )
        for publish in (alert, alert_raw):
            publish.add_catch(failed, errors=ALL_ERRORS, result_path=state_path("alert_error"))
            publish.next(failed)
        mark_failed.add_catch(alert_raw, errors=ALL_ERRORS, result_path=state_path("mark_failed_error"))
        mark_failed.next(alert)
        return mark_failed

    def _invoke(
        self, name: str, function: lambda_.IFunction, payload: dict[str, str], result_path: str
    ) -> tasks.LambdaInvoke:
        task = tasks.LambdaInvoke(
            self,
            name,
            lambda_function=function,
            payload=sfn.TaskInput.from_object(payload),
            payload_response_only=True,
            result_path=result_path,
            retry_on_service_exceptions=False,  # replaced by the explicit policy below
            task_timeout=STEP_TIMEOUT,
        )
        task.add_retry(errors=LAMBDA_TRANSIENT_ERRORS, interval=Duration.seconds(2), backoff_rate=2, max_attempts=4)
        return task

    def _publish(self, name: str, *, subject: str, message: sfn.TaskInput) -> tasks.SnsPublish:
        publish = tasks.SnsPublish(
            self, name, topic=self._topic, subject=subject, message=message, task_timeout=STEP_TIMEOUT
        )
        publish.add_retry(errors=PUBLISH_RETRY_ERRORS, interval=Duration.seconds(2), backoff_rate=2, max_attempts=4)
        return publish

    @staticmethod
    def _catch_into(state: _Catching, mark_failed: sfn.IChainable) -> _Catching:
        state.add_catch(mark_failed, errors=ALL_ERRORS, result_path=state_path("error"))
        return state

    def _grant_batch(self, gpu: GpuBatch) -> None:
        """What BatchSubmitJob would have granted for .sync, which the custom state must grant itself."""
        stack = Stack.of(self)
        for statement in (
            iam.PolicyStatement(
                actions=["batch:SubmitJob"],
                resources=[gpu.job_definition.job_definition_arn, gpu.queue.job_queue_arn],
            ),
            # Stops the job when the state times out or the execution is stopped.
            iam.PolicyStatement(
                actions=["batch:TerminateJob"],
                resources=[self._jobs_arn],
            ),
            iam.PolicyStatement(actions=["batch:DescribeJobs"], resources=["*"]),
            iam.PolicyStatement(
                actions=["events:PutTargets", "events:PutRule", "events:DescribeRule"],
                resources=[stack.format_arn(service="events", resource="rule/StepFunctionsGetEventsForBatchJobsRule")],
            ),
        ):
            self.state_machine.add_to_role_policy(statement)

    def _grant_map_run(self, storage: Storage) -> None:
        """The map run reads the manifest and writes its results under the sweep's experiments/ prefix. (CDK's
        DistributedMap grants states:StartExecution on this machine, and describe/stop on its executions.)"""
        storage.grant_objects(
            self.state_machine, "s3:GetObject", "s3:PutObject", "s3:ListMultipartUploadParts", "s3:AbortMultipartUpload"
        )

    @property
    def _jobs_arn(self) -> str:
        return Stack.of(self).format_arn(service="batch", resource="job", resource_name="*")

    def _acknowledge_wildcards(self, handlers: Handlers) -> None:
        role = self.state_machine.role
        acknowledge(
            role,
            "IAM5",
            "Resource '*' covers only actions without resource-level permissions: batch:DescribeJobs, the "
            "CloudWatch Logs delivery actions for execution logging, and X-Ray's PutTraceSegments/PutTelemetryRecords.",
            finding="Resource::*",
        )
        acknowledge(
            role,
            "IAM5",
            "Batch job ids exist only after SubmitJob, so TerminateJob (used to stop a job when its state times "
            "out or the execution is stopped) can only be scoped to this account's and region's jobs.",
            finding=resource_finding(self, self._jobs_arn),
        )
        invoked = (
            handlers.create_record,
            handlers.create_point,
            handlers.record_result,
            handlers.mark_failed,
            handlers.aggregate_sweep,
        )
        for function in invoked:
            acknowledge(
                role,
                "IAM5",
                "CDK's LambdaInvoke also grants the function's versions and aliases (<arn>:*); the wildcard is "
                "limited to this one function's own qualifiers.",
                finding=resource_finding(self, f"{function.function_arn}:*"),
            )
        acknowledge(
            Stack.of(self),
            "IAM5",
            "Execution names are experiment ids minted at run time, so execution-level actions (describe, stop) "
            "are scoped to all executions of this one state machine and nothing wider.",
            finding=resource_finding(self, self.executions_arn),
        )
        # CDK's DistributedMap policy names the machine as the last part of its ARN, so the findings do too.
        name = Fn.select(6, Fn.split(":", self.state_machine.state_machine_arn))
        for executions in (f"{name}:*", f"{name}/*:*"):  # its own executions, and its map runs' children
            acknowledge(
                self.state_machine.node.find_child("DistributedMapPolicy"),
                "IAM5",
                "CDK's DistributedMap lets the machine describe and stop the executions it starts; their names are "
                "minted at run time (<machine>/<map run>:<uuid> for a map run's children), so the scope is this one "
                "state machine's executions.",
                finding=resource_finding(
                    self,
                    Stack.of(self).format_arn(
                        service="states",
                        resource="execution",
                        resource_name=executions,
                        arn_format=ArnFormat.COLON_RESOURCE_NAME,
                    ),
                ),
            )
