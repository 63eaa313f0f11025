"""The alert topic, the alarms and rules that feed it, the Reconcile safety net, and one dashboard."""

from __future__ import annotations

from aws_cdk import Duration, Stack
from aws_cdk import aws_batch as batch
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from stacks.nag import acknowledge

PERIOD = Duration.minutes(5)
ENDED_BADLY = ["FAILED", "TIMED_OUT", "ABORTED"]


class Alerts(Construct):
    """The one SNS topic every alarm, alert and failed-job event goes to, encrypted with its own key."""

    def __init__(self, scope: Construct, construct_id: str, *, alert_email: str | None) -> None:
        super().__init__(scope, construct_id)
        self.key = kms.Key(self, "Key", description="codeclab: encrypts the alert topic", enable_key_rotation=True)
        # Alarms and EventBridge publish as services, not through a role, so the key policy must admit them.
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[
                    iam.ServicePrincipal("cloudwatch.amazonaws.com"),
                    iam.ServicePrincipal("events.amazonaws.com"),
                ],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],  # in a key policy, "*" means this key
                conditions={"StringEquals": {"aws:SourceAccount": Stack.of(self).account}},
            )
        )
        self.topic = sns.Topic(self, "Topic", display_name="codeclab alerts", master_key=self.key, enforce_ssl=True)
        if alert_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(alert_email))

    def grant_publish(self, grantee: iam.IGrantable) -> None:
        # Not topic.grant_publish: that grants kms:GenerateDataKey*, wider than SNS needs.
        iam.Grant.add_to_principal(grantee=grantee, actions=["sns:Publish"], resource_arns=[self.topic.topic_arn])
        self.key.grant(grantee, "kms:Decrypt", "kms:GenerateDataKey")


class Monitoring(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        alerts: Alerts,
        state_machine: sfn.StateMachine,
        functions: dict[str, lambda_.Function],
        reconcile: lambda_.Function,
        queue: batch.IJobQueue,
    ) -> None:
        super().__init__(scope, construct_id)
        self._action = cloudwatch_actions.SnsAction(alerts.topic)
        self._reconcile_dlq = self._reconcile_on_ended_executions(state_machine, reconcile)
        batch_failures = self._batch_failures_to_topic(queue, alerts.topic)
        self._alarms(state_machine, functions, batch_failures)
        self._dashboard(state_machine, functions, batch_failures)

    def _reconcile_on_ended_executions(self, state_machine: sfn.StateMachine, reconcile: lambda_.Function) -> sqs.Queue:
        """A Catch never runs for a console stop or a machine-level timeout; this rule finalises those records."""
        dlq = sqs.Queue(
            self,
            "ReconcileDeadLetters",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
        acknowledge(
            dlq,
            "SQS3",
            "This queue is itself the dead-letter queue of the Reconcile rule target and of the Reconcile "
            "function's failed async invocations; an alarm watches its depth, so a DLQ behind it would add nothing.",
        )
        # EventBridge's DLQ catches delivery failures; the function's own on-failure destination catches
        # events that Lambda accepted but the handler failed on after its retries.
        reconcile.configure_async_invoke(
            on_failure=destinations.SqsDestination(dlq), retry_attempts=2, max_event_age=Duration.hours(6)
        )
        events.Rule(
            self,
            "ExecutionEnded",
            description="codeclab: finalise the record of an execution that ended FAILED, TIMED_OUT or ABORTED",
            event_pattern=events.EventPattern(
                source=["aws.states"],
                detail_type=["Step Functions Execution Status Change"],
                detail={"status": ENDED_BADLY, "stateMachineArn": [state_machine.state_machine_arn]},
            ),
            targets=[
                targets.LambdaFunction(
                    reconcile, dead_letter_queue=dlq, retry_attempts=8, max_event_age=Duration.hours(6)
                )
            ],
        )
        return dlq

    def _batch_failures_to_topic(self, queue: batch.IJobQueue, topic: sns.ITopic) -> cloudwatch.Metric:
        """Each failed job of the GPU queue, as a readable message; returns the rule's match count."""
        detail = events.EventField.from_path
        rule = events.Rule(
            self,
            "BatchJobFailed",
            description="codeclab: a GPU Batch job failed (including jobs cancelled while waiting for capacity)",
            event_pattern=events.EventPattern(
                source=["aws.batch"],
                detail_type=["Batch Job State Change"],
                detail={"status": ["FAILED"], "jobQueue": [queue.job_queue_arn]},
            ),
            targets=[
                targets.SnsTopic(
                    topic,
                    # EventBridge assumes a role that may publish to this topic only, instead of a topic and key
                    # policy for events.amazonaws.com that no condition ties to this rule (confused deputy).
                    authorize_using_role=True,
                    message=events.RuleTargetInput.from_text(
                        f"codeclab Batch job {detail('$.detail.jobName')} ({detail('$.detail.jobId')}) "
                        f"FAILED: {detail('$.detail.statusReason')}"
                    ),
                )
            ],
        )
        acknowledge(
            rule,
            "IAM5",
            "The role EventBridge assumes to publish to the encrypted alert topic gets CDK's encrypt grant on that "
            "one KMS key: kms:GenerateDataKey* names GenerateDataKey and GenerateDataKeyWithoutPlaintext only.",
            finding="Action::kms:GenerateDataKey*",
        )
        return cloudwatch.Metric(
            namespace="AWS/Events",
            metric_name="TriggeredRules",
            dimensions_map={"RuleName": rule.rule_name},
            statistic=cloudwatch.Stats.SUM,
            period=PERIOD,
        )

    def _alarms(
        self, state_machine: sfn.StateMachine, functions: dict[str, lambda_.Function], batch_failures: cloudwatch.Metric
    ) -> None:
        self._alarm("ExecutionsFailed", state_machine.metric_failed(period=PERIOD), "An experiment execution failed")
        self._alarm("ExecutionsTimedOut", state_machine.metric_timed_out(period=PERIOD), "An execution timed out")
        self._alarm("ExecutionsAborted", state_machine.metric_aborted(period=PERIOD), "An execution was stopped")
        for name, function in functions.items():
            self._alarm(f"{name}Errors", function.metric_errors(period=PERIOD), f"The {name} handler raised errors")
        self._alarm("BatchJobsFailed", batch_failures, "A GPU Batch job failed")
        self._alarm(
            "ReconcileDeadLetters",
            self._reconcile_dlq.metric_approximate_number_of_messages_visible(period=PERIOD),
            "Reconcile could not handle an ended execution; its record may still look unfinished",
        )

    def _alarm(self, name: str, metric: cloudwatch.IMetric, description: str) -> None:
        alarm = cloudwatch.Alarm(
            self,
            f"{name}Alarm",
            metric=metric,
            alarm_description=f"codeclab: {description}",
            threshold=1,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        alarm.add_alarm_action(self._action)

    def _dashboard(
        self, state_machine: sfn.StateMachine, functions: dict[str, lambda_.Function], batch_failures: cloudwatch.Metric
    ) -> None:
        executions = [
            state_machine.metric_started(period=PERIOD),
            state_machine.metric_succeeded(period=PERIOD),
            state_machine.metric_failed(period=PERIOD),
            state_machine.metric_timed_out(period=PERIOD),
            state_machine.metric_aborted(period=PERIOD),
        ]
        errors = [f.metric_errors(period=PERIOD, label=name) for name, f in functions.items()]
        durations = [f.metric_duration(period=PERIOD, statistic="p99", label=name) for name, f in functions.items()]
        dashboard = cloudwatch.Dashboard(self, "Dashboard", default_interval=Duration.days(7))
        dashboard.add_widgets(
            cloudwatch.GraphWidget(title="Executions", left=executions, width=12),
            cloudwatch.GraphWidget(title="Batch jobs failed", left=[batch_failures], width=12),
        )
        dashboard.add_widgets(
            cloudwatch.GraphWidget(title="Lambda errors", left=errors, width=12),
            cloudwatch.GraphWidget(title="Lambda duration p99 (ms)", left=durations, width=12),
        )
