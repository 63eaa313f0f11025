"""The HTTP face of `codeclab serve`: each request becomes an API Gateway REST proxy event for one handler.

Locally nothing authenticates a caller (on AWS every method uses AWS_IAM), so the server binds to loopback
only. The handler is injected: in production it is the real `lambdas/api.py` handler bound to a context.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import logging
import re
import threading
import uuid
from collections.abc import Callable
from contextlib import suppress
from functools import cache
from http import HTTPStatus
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from waitress.server import create_server

from codeclab.experiments.api_contract import ProxyEvent, ProxyResponse
from codeclab.experiments.limits import CodecCaps
from codeclab.local.openapi import openapi_document

Invoke = Callable[[ProxyEvent], ProxyResponse]

MAX_BODY_BYTES = 1024 * 1024
# waitress reads a body up to this size, so a client still sending one gets our JSON 413, not a reset;
# beyond it waitress answers 413 itself.
DRAIN_LIMIT_BYTES = 16 * MAX_BODY_BYTES
# A burst of clients waits in the kernel's accept queue and waitress's channels instead of being reset.
THREADS, BACKLOG, CONNECTION_LIMIT = 8, 1024, 256
OPENAPI_PATH = "/openapi.json"
# Framing is the server's to set: a proxy response's own values could contradict the body actually written.
_FRAMING_HEADERS = frozenset({"content-length", "transfer-encoding", "connection"})
# The operation keys of an OpenAPI path item.
_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})

logger = logging.getLogger(__name__)
# waitress warns at every request that waits for a thread ("Task queue depth is N"): a burst is expected here
logging.getLogger("waitress.queue").setLevel(logging.ERROR)


def loopback_address(host: str) -> str:
    """The host as a loopback IP literal; anything else is refused, as the local API has no authentication."""
    literal = "127.0.0.1" if host == "localhost" else host.strip("[]")  # no lookup: /etc/hosts could say anything
    try:
        address = ipaddress.ip_address(literal)
    except ValueError:
        address = None
    if address is None or not address.is_loopback:
        raise ValueError(
            f"refusing to serve on {host!r}: the local API has no authentication, so it binds to a loopback "
            "address only (127.0.0.0/8 or ::1)"
        )
    return str(address)


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@cache
def _documented_routes() -> list[tuple[re.Pattern[str], tuple[str, ...]]]:
    """Each documented path as a pattern over the raw request path, with the methods the document gives it."""
    routes = []
    for template, item in openapi_document()["paths"].items():
        pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template))  # a {param} is one path segment
        routes.append((re.compile(pattern), tuple(sorted(m.upper() for m in item if m in _METHODS))))
    return routes


class _Refused(Exception):
    """A request the server answers itself, before the handler sees it."""

    def __init__(self, status: int, message: str, headers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or []


class _App:
    """The WSGI application: each request as an API Gateway REST proxy event, the handler's answer as HTTP."""

    def __init__(self, invoke: Invoke, caps: CodecCaps | None) -> None:
        self.invoke, self.caps = invoke, caps
        self.url = ""  # set once the server is bound (the OpenAPI document names it)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        method = environ["REQUEST_METHOD"]
        status, headers, body = self._respond(method, environ)
        # the access log, off unless asked for (redaction.py strips presigned query strings from it)
        logger.debug('%s "%s %s %s" %d', environ.get("REMOTE_ADDR"), method, environ.get("REQUEST_URI"),
                     environ.get("SERVER_PROTOCOL"), status)  # fmt: skip
        start_response(f"{status} {_reason(status)}", [*headers, ("Content-Length", str(len(body)))])
        return [b"" if method == "HEAD" else body]  # a HEAD answer has the headers a body would have

    def _respond(self, method: str, environ: dict[str, Any]) -> tuple[int, list[tuple[str, str]], bytes]:
        target = urlsplit(environ.get("REQUEST_URI") or environ.get("PATH_INFO", "/"))  # as sent, not decoded
        if method == "GET" and target.path == OPENAPI_PATH:
            return _json(200, openapi_document(self.url, self.caps))
        try:
            body = _read_body(environ)
            _check_method(method, target.path)
        except _Refused as refused:
            return _json(refused.status, {"message": refused.message}, refused.headers)
        event = _event(method, target.path, target.query, environ, body)
        try:
            response = self.invoke(event)
        except Exception:
            logger.exception("the API handler raised on %s %s", method, target.path)
            return _json(500, {"message": "internal error: the API handler raised; see the server log"})
        try:
            return _unpack(response)
        except (TypeError, ValueError) as exc:
            logger.error("malformed proxy response on %s %s: %s", method, target.path, exc)
            return _json(502, {"message": "the API handler returned a malformed proxy response"})


def _read_body(environ: dict[str, Any]) -> str | None:
    """waitress has already refused a bad or conflicting Content-Length (400) and decoded a chunked body."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    if length > MAX_BODY_BYTES:
        raise _Refused(413, f"the body is {length} bytes; the limit is {MAX_BODY_BYTES}")
    if length == 0:
        return None  # API Gateway passes an absent body as null
    try:
        return environ["wsgi.input"].read(length).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Refused(400, f"the body is not valid UTF-8 (byte {exc.start})") from None


def _check_method(method: str, path: str) -> None:
    """A documented path with a method the document does not give it is 405, naming the allowed ones."""
    for pattern, methods in _documented_routes():
        if pattern.fullmatch(path) and method not in methods:
            allowed = ", ".join(methods)
            raise _Refused(405, f"{method} is not allowed on {path}; use {allowed}", [("Allow", allowed)])


def _event(method: str, path: str, query_string: str, environ: dict[str, Any], body: str | None) -> ProxyEvent:
    """The proxy event for one WSGI request; the path stays as sent, so an encoded '/' cannot change the route."""
    headers = {_header_name(key): str(value) for key, value in environ.items() if key.startswith("HTTP_")}
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            headers[_header_name(key)] = str(environ[key])
    query = parse_qs(query_string, keep_blank_values=True)
    return proxy_event(method, path, body, headers, query, environ.get("REMOTE_ADDR", ""))


def proxy_event(
    method: str,
    path: str,
    body: str | None,
    headers: dict[str, str],
    query: dict[str, list[str]] | None = None,
    source_ip: str = "127.0.0.1",
) -> ProxyEvent:
    """The REST API (v1) proxy event API Gateway sends the API handler for this request."""
    return {
        "httpMethod": method,
        "path": path,
        "resource": path,  # API Gateway's route template; the handler does its own routing
        "headers": headers,
        "multiValueHeaders": {name: [value] for name, value in headers.items()},
        "queryStringParameters": {name: values[-1] for name, values in (query or {}).items()} or None,
        "multiValueQueryStringParameters": query or None,
        "pathParameters": None,
        "body": body,
        "isBase64Encoded": False,
        "requestContext": {
            "requestId": str(uuid.uuid4()),
            "stage": "local",
            "identity": {"sourceIp": source_ip},
            "httpMethod": method,
            "path": path,
        },
    }


def _header_name(key: str) -> str:
    """HTTP_IDEMPOTENCY_KEY -> Idempotency-Key (WSGI keeps no case; API Gateway's lookups ignore it)."""
    return "-".join(part.capitalize() for part in key.removeprefix("HTTP_").split("_"))


def _json(
    status: int, payload: dict[str, Any], headers: list[tuple[str, str]] | None = None
) -> tuple[int, list[tuple[str, str]], bytes]:
    return status, [("Content-Type", "application/json"), *(headers or [])], json.dumps(payload).encode("utf-8")


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Status"


def _unpack(response: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    """Status, headers and body bytes of a proxy response; ValueError or TypeError when it is not one."""
    if not isinstance(response, dict) or not isinstance(response.get("statusCode"), int):
        raise ValueError("no integer statusCode")
    if not 100 <= response["statusCode"] <= 599:
        raise ValueError(f"statusCode {response['statusCode']} is not an HTTP status")
    merged = {name: list(values) for name, values in (response.get("multiValueHeaders") or {}).items()}
    for name, value in (response.get("headers") or {}).items():
        merged.setdefault(name, [value])
    headers = [(str(n), str(v)) for n, values in merged.items() for v in values if n.lower() not in _FRAMING_HEADERS]
    if any(c in text for pair in headers for text in pair for c in "\r\n"):
        raise ValueError("a header contains a line break")
    body = response.get("body") or ""
    if not isinstance(body, str):
        raise TypeError(f"body must be a string, not {type(body).__name__}")
    raw = base64.b64decode(body, validate=True) if response.get("isBase64Encoded") else body.encode("utf-8")
    return response["statusCode"], headers, raw


class ApiServer:
    """The local API on waitress: a thread pool, a deep accept backlog, and no traceback for a client that leaves.

    Bound on creation; serve it with start()/stop(), as a context manager, or serve_forever().
    """

    def __init__(self, invoke: Invoke, host: str = "127.0.0.1", port: int = 0, caps: CodecCaps | None = None) -> None:
        """`caps`: the deployment's limits.codec caps, which its OpenAPI document states as maxima."""
        self._app = _App(invoke, caps)
        self._server: Any = create_server(
            self._app, host=loopback_address(host), port=port, threads=THREADS, backlog=BACKLOG,
            connection_limit=CONNECTION_LIMIT, channel_timeout=30, max_request_body_size=DRAIN_LIMIT_BYTES,
            asyncore_loop_timeout=0.2, ident="codeclab", expose_tracebacks=False, log_socket_errors=False,
        )  # fmt: skip
        self._app.url = self.url
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        # The serving thread may see `_stopping` at its own poll and release the trigger's pipe while stop() is about
        # to pull it: a write to a closed descriptor (EBADF), or to whatever file took its number since.
        self._release_lock = threading.Lock()
        self._released = False

    @property
    def port(self) -> int:
        return int(self._server.effective_port)

    @property
    def url(self) -> str:
        return _url(str(self._server.effective_host), self.port)

    def start(self) -> ApiServer:
        """Serve on a background thread."""
        if self._thread is None:
            self._thread = threading.Thread(target=self.serve_forever, name=f"codeclab-api-{self.port}", daemon=True)
            self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve on this thread until stop() (or the CLI's Ctrl-C), then release the port and every connection."""
        try:
            while not self._stopping.is_set():
                self._server.asyncore.loop(timeout=0.2, map=self._server._map, count=1)
        finally:
            self._release()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is None:  # never served: only the bound socket to let go
            self._release()
            return
        with self._release_lock:
            if not self._released:
                self._server.pull_trigger()  # wake the loop from select()
        self._thread.join()
        self._thread = None

    def _release(self) -> None:
        with self._release_lock:
            if self._released:
                return
            self._released = True
            for dispatcher in list(self._server._map.values()):  # the server itself, its trigger, each connection
                with suppress(OSError):
                    dispatcher.close()
        self._server.task_dispatcher.shutdown(timeout=5)

    def __enter__(self) -> ApiServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()


def serve_api(invoke: Invoke, host: str = "127.0.0.1", port: int = 0) -> ApiServer:
    """A bound, not yet started, local API server on a loopback host (port 0: a free port)."""
    return ApiServer(invoke, host, port)
