"""Faults injected at the boto3 layer: an AWS call answers with an error, as a throttled or failing service does.
Which calls, and how many, is the fault plan's to say (faults.py); this is the hook that answers them.

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
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import boto3
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.httpsession import URLLib3Session

from codeclab.local.faults import AwsFault

EVENT = "before-send"
_UNIQUE_ID = "codeclab-local-aws-faults"
# (service, operation) -> the fault this call answers with, if the plan has one left for it (FaultState.take_aws)
TakeFault = Callable[[str, str], AwsFault | None]


def install(take: TakeFault) -> None:
    boto3._get_default_session().events.register(EVENT, partial(_before_send, take), unique_id=_UNIQUE_ID)


def uninstall() -> None:
    boto3._get_default_session().events.unregister(EVENT, unique_id=_UNIQUE_ID)


def _before_send(take: TakeFault, request: AWSPreparedRequest, event_name: str, **_: Any) -> AWSResponse | None:
    _event, service, operation = event_name.split(".", 2)
    fault = take(service, operation)
    if fault is None:
        return None  # botocore sends the request as usual
    if fault.after_landing:
        URLLib3Session().send(request)  # the write takes effect; its response is what gets lost
    return _error_response(request, fault)


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
