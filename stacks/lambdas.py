"""The seven handlers: one code asset, one runtime, the Powertools layer, and a role each with only what it uses."""

from __future__ import annotations

from aws_cdk import Duration, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from constructs import Construct

from stacks.lambda_bundle import lambda_code
from stacks.logs import EncryptedLogs
from stacks.nag import acknowledge
from stacks.settings import JOB_VCPUS, Settings
from stacks.storage import Storage

POWERTOOLS_ACCOUNT = "017000801446"  # the account AWS publishes the Powertools layers from
# Below the workflow's 60 s task timeout, so a slow handler fails as a Lambda error, not a state timeout.
STEP_TIMEOUT = Duration.seconds(30)
# API Gateway gives up on an integration after 29 s.
API_TIMEOUT = Duration.seconds(29)


class Handlers(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: Settings,
        storage: Storage,
        alert_topic: sns.ITopic,
        logs: EncryptedLogs,
    ) -> None:
        super().__init__(scope, construct_id)
        self._code = lambda_code()
        self._logs = logs
        self._layer = lambda_.LayerVersion.from_layer_version_arn(
            self,
            "Powertools",
            f"arn:{Stack.of(self).partition}:lambda:{Stack.of(self).region}:{POWERTOOLS_ACCOUNT}:layer:"
            f"AWSLambdaPowertoolsPythonV3-python311-x86_64:{settings.powertools_layer_version}",
        )
        self._environment = {
            "TABLE_NAME": storage.table.table_name,
            "ARTIFACT_BUCKET": storage.bucket.bucket_name,
            "POWERTOOLS_SERVICE_NAME": "codeclab",
            "POWERTOOLS_METRICS_NAMESPACE": "codeclab",
            "MAX_TIMEOUT_SECONDS": str(settings.max_timeout_seconds),
            "RUNNABLE_TIMEOUT_SECONDS": str(settings.runnable_timeout_seconds),
            "NOTIFY_ON_SUCCESS": str(settings.notify_on_success).lower(),
            "ALERT_TOPIC_ARN": alert_topic.topic_arn,
            # How many jobs the compute environment runs at once: the bound on a sweep's max_concurrency.
            "MAX_SWEEP_CONCURRENCY": str(settings.max_vcpus // JOB_VCPUS),
            # The caps on a spec's limits.codec, the worker's job's own: the API and CreateRecord check them.
            **settings.codec_cap_environment,
        }
        self.create_record = self._function("CreateRecord", "create_record")
        self.create_point = self._function("CreatePoint", "create_point")
        self.record_result = self._function("RecordResult", "record_result")
        self.mark_failed = self._function("MarkFailed", "mark_failed")
        self.aggregate_sweep = self._function("AggregateSweep", "aggregate_sweep")
        self.reconcile = self._function("Reconcile", "reconcile")
        self.api = self._function("Api", "api", timeout=API_TIMEOUT)
        self._grant(storage)
        acknowledge(
            self,
            "L1",
            "Pinned to python3.11 on purpose: the bundle carries rpds-py compiled for cp311, the managed "
            "Powertools layer is the python311 build, and the project (pyproject, CI, GPU image) targets 3.11.",
        )
        acknowledge(
            self,
            "IAM5",
            "Active X-Ray tracing needs xray:PutTraceSegments and xray:PutTelemetryRecords, which support no "
            "resource-level permissions, so CDK grants them on '*'; every other permission here names its resource.",
            finding="Resource::*",
        )

    @property
    def all(self) -> dict[str, lambda_.Function]:
        return {
            "CreateRecord": self.create_record,
            "CreatePoint": self.create_point,
            "RecordResult": self.record_result,
            "MarkFailed": self.mark_failed,
            "AggregateSweep": self.aggregate_sweep,
            "Reconcile": self.reconcile,
            "Api": self.api,
        }

    def _function(self, name: str, module: str, timeout: Duration = STEP_TIMEOUT) -> lambda_.Function:
        log_group = self._logs.group(self, f"{name}Logs")
        # Our own role instead of AWSLambdaBasicExecutionRole: it may write to its own log group only.
        role = iam.Role(
            self,
            f"{name}Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"codeclab {module} handler",
        )
        log_group.grant_write(role)
        return lambda_.Function(
            self,
            name,
            runtime=lambda_.Runtime.PYTHON_3_11,
            architecture=lambda_.Architecture.X86_64,
            handler=f"{module}.handler",
            code=self._code,
            layers=[self._layer],
            role=role,
            log_group=log_group,
            timeout=timeout,
            memory_size=512,  # jsonschema's import dominates a cold start; more memory means more CPU
            tracing=lambda_.Tracing.ACTIVE,
            environment=self._environment,
        )

    def _grant(self, storage: Storage) -> None:
        # UpdateItem: a sweep's parent item goes RUNNING once its points are queued.
        storage.grant_table(self.create_record, "dynamodb:PutItem", "dynamodb:Query", "dynamodb:UpdateItem")
        storage.grant_objects(self.create_record, "s3:PutObject")  # writes a sweep's manifest, or spec.json
        for resolver in (self.create_record, self.api):  # both read a test set's folder or manifest
            storage.grant_inputs(resolver)
            storage.grant_codecs(resolver)  # and a codec package's codec.json, to check its params
        # A point's record and its job's spec.json; reads (Query) its sweep's status first.
        storage.grant_table(self.create_point, "dynamodb:PutItem", "dynamodb:Query")
        storage.grant_objects(self.create_point, "s3:PutObject")
        for reader in (self.record_result, self.mark_failed):  # both read the worker's result.json
            storage.grant_objects(reader, "s3:GetObject")
        storage.grant_table(self.record_result, "dynamodb:UpdateItem", "dynamodb:GetItem", "dynamodb:Query")
        # Counts the points through the parent index, finalises a stranded one, reads the manifest for the names
        # of points that never started.
        storage.grant_table(
            self.aggregate_sweep, "dynamodb:UpdateItem", "dynamodb:GetItem", "dynamodb:Query", parent_index=True
        )
        storage.grant_objects(self.aggregate_sweep, "s3:GetObject")
        # PutItem: when CreateRecord failed before writing, these two write the record so it can end final.
        for finaliser in (self.mark_failed, self.reconcile):
            storage.grant_table(  # the parent index: a sweep that ends early finalises its unfinished points
                finaliser,
                "dynamodb:PutItem",
                "dynamodb:UpdateItem",
                "dynamodb:GetItem",
                "dynamodb:Query",
                parent_index=True,
            )
        # Cancel marks the item ABORTED itself, so the API also updates items.
        storage.grant_table(self.api, "dynamodb:GetItem", "dynamodb:Query", "dynamodb:UpdateItem", status_index=True)
