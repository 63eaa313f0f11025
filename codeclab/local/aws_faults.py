"""Faults injected at the boto3 layer: an AWS call answers with an error, as a throttled or failing service does.

The hook sits on boto3's default session, so it reaches every client made in this process after the
emulator starts: the workflow's Lambda handlers (they run in-process) and Step Functions' own service
integrations (moto's state machine interpreter publishes to SNS through boto3). The worker, a separate
process, is not affected.

A fault fails a call in one of two ways:
- before it lands (throttling, an outage): the request is never sent, and the caller's retry policy applies;
- after it lands (a lost response): the write takes effect, but the caller sees the error, as when an SDK
  retry of a write whose response was lost trips over that write's own condition.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.httpsession import URLLib3Session

EVENT = "before-send"


@dataclass(frozen=True)
class AwsFault:
    service: str  # as botocore names it in events: "dynamodb", "sns"
    operation: str  # "UpdateItem", "Publish"
    error_code: str  # what the service would answer: "ProvisionedThroughputExceededException", "InternalError"
    times: int = 1
    after_landing: bool = False
    http_status: int = 400

    def describe(self) -> str:
        when = "after the write lands" if self.after_landing else "before sending"
        return f"{self.service}.{self.operation} -> {self.error_code} x{self.times} ({when})"


class AwsFaultInjector:
    """Arm faults with `arm`; each fires on the next matching calls until its count is spent."""

    def __init__(self) -> None:
        self._armed: dict[AwsFault, int] = {}  # each fault armed, with the calls it has yet to fail
        self._lock = threading.Lock()
        self.fired: list[str] = []  # "service.Operation error" per injected failure, in order

    def install(self) -> None:
        boto3._get_default_session().events.register(EVENT, self._before_send, unique_id=_UNIQUE_ID)

    def uninstall(self) -> None:
        boto3._get_default_session().events.unregister(EVENT, unique_id=_UNIQUE_ID)
        self.disarm()

    def arm(self, *faults: AwsFault) -> None:
        with self._lock:
            for fault in faults:
                self._armed[fault] = self._armed.get(fault, 0) + fault.times

    def disarm(self) -> None:
        """Drop the faults not yet spent (a later run must not inherit them)."""
        with self._lock:
            self._armed.clear()

    def _take(self, service: str, operation: str) -> AwsFault | None:
        with self._lock:
            fault = next((f for f in self._armed if (f.service, f.operation) == (service, operation)), None)
            if fault is not None:
                self._armed[fault] -= 1
                if self._armed[fault] <= 0:
                    del self._armed[fault]
                self.fired.append(f"{service}.{operation} {fault.error_code}")
        return fault

    def _before_send(self, request: AWSPreparedRequest, event_name: str, **_: Any) -> AWSResponse | None:
        _event, service, operation = event_name.split(".", 2)
        fault = self._take(service, operation)
        if fault is None:
            return None  # botocore sends the request as usual
        if fault.after_landing:
            URLLib3Session().send(request)  # the write takes effect; its response is what gets lost
        return _error_response(request, fault)


_UNIQUE_ID = "codeclab-local-aws-faults"


def _error_response(request: AWSPreparedRequest, fault: AwsFault) -> AWSResponse:
    message = f"injected by codeclab's fault matrix: {fault.describe()}"
    if "X-Amz-Target" in request.headers:  # the JSON protocol (DynamoDB)
        body = json.dumps({"__type": fault.error_code, "message": message}).encode()
        headers = {"Content-Type": "application/x-amz-json-1.0", "x-amzn-RequestId": "injected-fault"}
    else:  # the query protocol (SNS)
        body = (
            f"<ErrorResponse><Error><Type>{'Receiver' if fault.http_status >= 500 else 'Sender'}</Type>"
            f"<Code>{fault.error_code}</Code><Message>{message}</Message></Error>"
            "<RequestId>injected-fault</RequestId></ErrorResponse>"
        ).encode()
        headers = {"Content-Type": "text/xml", "x-amzn-RequestId": "injected-fault"}
    return AWSResponse(request.url, fault.http_status, headers, _Body(body))


class _Body:
    """The raw-body interface AWSResponse reads from."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._data
