"""The smallest client of the local HTTP API: (status, parsed JSON) for a request, never through a proxy."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

# urllib honours HTTP(S)_PROXY; requests to the loopback server must go to it directly.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def call_api(
    url: str,
    method: str = "GET",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30,
) -> tuple[int, Any]:
    """Send one request; an HTTP error status is returned, not raised. URLError (no server) propagates."""
    request = urllib.request.Request(
        url, data=body, method=method, headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with OPENER.open(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read() or b"{}")
