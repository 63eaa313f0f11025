"""The one codeclab stack: storage, the GPU Batch side, the handlers, the workflow, the API and monitoring."""

from __future__ import annotations

import json
from typing import Any

from aws_cdk import CfnOutput, Stack
from constructs import Construct

from codeclab.experiments.limits import CODEC_CAPS_OUTPUT
from stacks.api import ExperimentsApi
from stacks.compute import GpuBatch
from stacks.lambdas import Handlers
from stacks.logs import EncryptedLogs
from stacks.monitoring import Alerts, Monitoring
from stacks.settings import Settings
from stacks.storage import Storage
from stacks.workflow import ExperimentWorkflow


class CodeclabStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        settings = Settings.from_node(self.node)
        logs = EncryptedLogs(self, "Logs")
        self.storage = Storage(self, "Storage", table_name=settings.table_name)
        self.alerts = Alerts(self, "Alerts", alert_email=settings.alert_email)
        self.gpu = GpuBatch(self, "Gpu", settings=settings, storage=self.storage, logs=logs)
        self.handlers = Handlers(
            self, "Handlers", settings=settings, storage=self.storage, alert_topic=self.alerts.topic, logs=logs
        )
        self.workflow = ExperimentWorkflow(
            self,
            "Workflow",
            settings=settings,
            handlers=self.handlers,
            gpu=self.gpu,
            alerts=self.alerts,
            logs=logs,
            storage=self.storage,
        )
        self._grant_executions()
        self.api = ExperimentsApi(self, "Api", handler=self.handlers.api, logs=logs)
        Monitoring(
            self,
            "Monitoring",
            alerts=self.alerts,
            state_machine=self.workflow.state_machine,
            functions=self.handlers.all,
            reconcile=self.handlers.reconcile,
            queue=self.gpu.queue,
        )
        self._outputs(settings)

    def _grant_executions(self) -> None:
        machine = self.workflow.state_machine
        api = self.handlers.api
        api.add_environment("STATE_MACHINE_ARN", machine.state_machine_arn)
        machine.grant_start_execution(api)
        self.workflow.grant_executions(api, "states:StopExecution", "states:DescribeExecution")
        self.workflow.grant_executions(self.handlers.reconcile, "states:DescribeExecution")
        # Reconcile finalises what no Catch saw, so it sends that experiment's one alert itself.
        self.alerts.grant_publish(self.handlers.reconcile)

    def _outputs(self, settings: Settings) -> None:
        for name, value in {
            "ApiUrl": self.api.rest_api.url,
            "StateMachineArn": self.workflow.state_machine.state_machine_arn,
            "TableName": self.storage.table.table_name,
            "ArtifactBucketName": self.storage.bucket.bucket_name,
            "AlertTopicArn": self.alerts.topic.topic_arn,
            "JobQueueArn": self.gpu.queue.job_queue_arn,
            "JobDefinitionArn": self.gpu.job_definition.job_definition_arn,
            # the caps on a spec's limits.codec, for `codeclab submit --stack` to check before it starts anything
            CODEC_CAPS_OUTPUT: json.dumps(settings.codec_cap_environment, sort_keys=True),
        }.items():
            CfnOutput(self, name, value=value)
