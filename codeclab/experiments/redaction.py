"""Signed-request material kept out of logs: SigV4 Authorization values, signatures, credential scopes
(which start with the access key id) and session tokens.

Two ways it could reach a log, each closed here:
- botocore logs every request it signs at DEBUG (botocore.auth: the canonical request, session token
  included, and the signature; botocore.endpoint: the sent headers, Authorization included). codeclab
  never turns DEBUG on, but a deployment can (a Lambda's ApplicationLogLevel, a developer's basicConfig),
  so `install_log_redaction` filters those loggers from the moment codeclab.experiments is imported.
- An API Gateway event carries the caller's signed headers and access key id, and Powertools prints whole
  events when asked to (POWERTOOLS_LOGGER_LOG_EVENT, POWERTOOLS_DEV). `without_caller_credentials` gives the
  handlers an event without them; API Gateway has authenticated the caller (AWS_IAM) before they run.
"""

from __future__ import annotations

import logging
import re
from typing import Any

REDACTED = "<redacted>"

# `Authorization': b'AWS4-HMAC-SHA256 Credential=...'`, `"authorization": "..."`: the whole value.
_AUTHORIZATION = re.compile(r"(authorization['\"]?\s*[:=]\s*b?['\"]?)[^'\"\r\n]+", re.IGNORECASE)
# `x-amz-security-token:...` (a canonical header), `X-Amz-Security-Token=...` (a query), `Signature:\n<hex>`,
# `Credential=AKID/...`: one token each.
_SIGNED_FIELD = re.compile(
    r"((?:x-amz-security-token|x-amz-credential|x-amz-signature|credential|signature)['\"]?\s*[:=]\s*b?['\"]?)"
    r"[^'\"&,\s]+",
    re.IGNORECASE,
)
# The loggers that write signed requests: botocore's signer and sender, and request lines (a presigned URL's
# query carries its signature), from urllib3 and from the local API's access log.
SIGNED_REQUEST_LOGGERS = ("botocore.auth", "botocore.endpoint", "urllib3.connectionpool", "codeclab.local.http_api")
CALLER_CREDENTIAL_HEADERS = frozenset({"authorization", "x-amz-security-token"})
CALLER_CREDENTIAL_PARAMS = frozenset({"x-amz-credential", "x-amz-signature", "x-amz-security-token"})


def redact_signed_material(text: str) -> str:
    return _SIGNED_FIELD.sub(rf"\1{REDACTED}", _AUTHORIZATION.sub(rf"\1{REDACTED}", text))


class SignedRequestRedaction(logging.Filter):
    """Rewrites a record's message without signed-request material; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact_signed_material(message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


def install_log_redaction() -> None:
    """Filter the loggers that write signed requests (idempotent); a filter holds whatever their level."""
    for name in SIGNED_REQUEST_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, SignedRequestRedaction) for f in logger.filters):
            logger.addFilter(SignedRequestRedaction())


def without_caller_credentials(event: Any) -> Any:
    """An API Gateway proxy event less the caller's SigV4 material (a copy); any other event as it is."""
    if not isinstance(event, dict) or not isinstance(event.get("requestContext"), dict):
        return event
    redacted = dict(event)
    for key, names in (
        ("headers", CALLER_CREDENTIAL_HEADERS),
        ("multiValueHeaders", CALLER_CREDENTIAL_HEADERS),
        ("queryStringParameters", CALLER_CREDENTIAL_PARAMS),
        ("multiValueQueryStringParameters", CALLER_CREDENTIAL_PARAMS),
    ):
        if isinstance(event.get(key), dict):
            redacted[key] = {
                name: _masked(value) if name.lower() in names else value for name, value in event[key].items()
            }
    identity = event["requestContext"].get("identity")
    if isinstance(identity, dict) and identity.get("accessKey"):
        redacted["requestContext"] = {**event["requestContext"], "identity": {**identity, "accessKey": REDACTED}}
    return redacted


def _masked(value: Any) -> Any:
    return [REDACTED for _ in value] if isinstance(value, list) else REDACTED
