"""Deliveries moto does not make: EventBridge's rule that sends Step Functions status changes to Reconcile, and,
so that local runs can keep them, a capture of every alert the workflow publishes.
"""

from __future__ import annotations

import json
import logging
from typing import Any, TypedDict

from codeclab.experiments.aws_clients import client as aws_client
from codeclab.local.hooks import Handlers

log = logging.getLogger("codeclab.local")

RECONCILE_MODULE = "reconcile"
ENDED_BADLY = frozenset({"FAILED", "TIMED_OUT", "ABORTED"})  # what the Reconcile rule matches
ALERT_QUEUE = "codeclab-local-alerts"


class ExecutionDetail(TypedDict, total=False):
    """DescribeExecution's fields that the status-change event carries (its detail)."""

    executionArn: str | None
    stateMachineArn: str | None
    name: str | None
    status: str | None
    input: str | None
    error: str | None
    cause: str | None


# "Step Functions Execution Status Change", as EventBridge delivers it.
StatusChangeEvent = TypedDict("StatusChangeEvent", {"source": str, "detail-type": str, "detail": ExecutionDetail})


class ReconcileRule:
    """The rule's part: an execution that ended badly is delivered to Reconcile, which Lambda invokes
    asynchronously: a first try, then the function's retry attempts from its EventInvokeConfig. An event that
    fails every try goes to the dead letters (a queue with an alarm on AWS)."""

    def __init__(self, handlers: Handlers, retry_attempts: int) -> None:
        self._handlers = handlers
        self._tries = 1 + retry_attempts
        self.dead_letters: list[StatusChangeEvent] = []

    def deliver(self, execution: ExecutionDetail) -> None:
        if execution.get("status") not in ENDED_BADLY:
            return
        detail: ExecutionDetail = {
            "executionArn": execution.get("executionArn"),
            "stateMachineArn": execution.get("stateMachineArn"),
            "name": execution.get("name"),
            "status": execution.get("status"),
            "input": execution.get("input"),
            "error": execution.get("error"),
            "cause": execution.get("cause"),
        }
        event: StatusChangeEvent = {
            "source": "aws.states",
            "detail-type": "Step Functions Execution Status Change",
            "detail": detail,
        }
        for attempt in range(1, self._tries + 1):
            try:
                self._handlers.call(RECONCILE_MODULE, "handler", RECONCILE_MODULE, event)
                return
            except Exception as exc:
                log.info("reconcile async try %d of %d raised %s: %s", attempt, self._tries, type(exc).__name__, exc)
        self.dead_letters.append(event)


class CapturedAlert(TypedDict):
    """One alert as the topic published it; kept in runs/<id>/alerts.json."""

    subject: str | None
    message: Any  # the JSON body MarkFailed or Reconcile wrote, parsed; AlertRaw's raw state as text


class AlertCapture:
    """Every alert published to the stack's topic, captured by an SQS queue subscribed to it."""

    def __init__(self) -> None:
        self._queue_url = ""
        self._alerts: list[CapturedAlert] = []

    def subscribe(self, topic_arn: str) -> None:
        sns, sqs = aws_client("sns"), aws_client("sqs")
        self._queue_url = sqs.create_queue(QueueName=ALERT_QUEUE)["QueueUrl"]
        attributes = sqs.get_queue_attributes(QueueUrl=self._queue_url, AttributeNames=["QueueArn"])["Attributes"]
        sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=attributes["QueueArn"],
                      Attributes={"RawMessageDelivery": "false"})  # fmt: skip

    def alerts_for(self, experiment_id: str) -> list[CapturedAlert]:
        """The alerts captured so far that name this experiment (subject, parsed message)."""
        self._drain()
        return [alert for alert in self._alerts if _names(alert, experiment_id)]

    def _drain(self) -> None:
        sqs = aws_client("sqs")
        while batch := sqs.receive_message(QueueUrl=self._queue_url, MaxNumberOfMessages=10).get("Messages"):
            for message in batch:
                envelope = json.loads(message["Body"])
                self._alerts.append(
                    {"subject": envelope.get("Subject"), "message": _maybe_json(envelope.get("Message", ""))}
                )
                sqs.delete_message(QueueUrl=self._queue_url, ReceiptHandle=message["ReceiptHandle"])


def _names(alert: CapturedAlert, experiment_id: str) -> bool:
    """Whether an alert is about this experiment: its own id field, not a mention (a sweep's alert lists its points)."""
    message = alert.get("message")
    if isinstance(message, dict) and "experiment_id" in message:
        return bool(message["experiment_id"] == experiment_id)
    return experiment_id in json.dumps(alert)  # AlertRaw carries the raw state, with no id field of its own


def _maybe_json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text
