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
import socket
import socketserver
import threading
import uuid
from collections.abc import Callable
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from codeclab.local.openapi import openapi_document

Invoke = Callable[[dict[str, Any]], dict[str, Any]]

MAX_BODY_BYTES = 1024 * 1024
# A refused body up to this size is read and dropped, so a client still sending it gets the 413, not a reset.
DRAIN_LIMIT_BYTES = 16 * MAX_BODY_BYTES
OPENAPI_PATH = "/openapi.json"
# Framing is the server's to set: a proxy response's own values could contradict the body actually written.
_FRAMING_HEADERS = frozenset({"content-length", "transfer-encoding", "connection"})
# The operation keys of an OpenAPI path item.
_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})

logger = logging.getLogger(__name__)


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


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a stalled connection must not keep the process alive

    def __init__(self, host: str, port: int, invoke: Invoke) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.invoke = invoke
        super().__init__((host, port), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn), which can stall; a loopback literal needs none.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    @property
    def url(self) -> str:
        return _url(self.server_name, self.server_port)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = 30  # seconds a silent client may hold its thread

    def do_GET(self) -> None:
        if urlsplit(self.path).path == OPENAPI_PATH:
            self._send_json(200, openapi_document(self.server.url))
        else:
            self._proxy()

    def do_POST(self) -> None:
        self._proxy()

    def do_PUT(self) -> None:
        self._proxy()

    def do_DELETE(self) -> None:
        self._proxy()

    def do_PATCH(self) -> None:
        self._proxy()

    def __getattr__(self, name: str) -> Any:
        # Any other method (HEAD, TRACE, QUERY...) gets a JSON 405 or the handler's 404, not http.server's HTML 501.
        if name.startswith("do_"):
            return self._proxy
        raise AttributeError(name)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), format % args)  # the access log, off unless asked for

    def _proxy(self) -> None:
        try:
            body = self._read_body()
            self._check_method()
            event = self._event(body)
        except _Refused as refused:
            self._send_json(refused.status, {"message": refused.message}, refused.headers)
            return
        try:
            response = self.server.invoke(event)
        except Exception:
            logger.exception("the API handler raised on %s %s", event["httpMethod"], event["path"])
            self._send_json(500, {"message": "internal error: the API handler raised; see the server log"})
            return
        try:
            status, headers, body = _unpack(response)
        except (TypeError, ValueError) as exc:
            logger.error("malformed proxy response on %s %s: %s", event["httpMethod"], event["path"], exc)
            self._send_json(502, {"message": "the API handler returned a malformed proxy response"})
            return
        self._send(status, headers, body)

    def _read_body(self) -> str | None:
        if "Transfer-Encoding" in self.headers:
            raise _Refused(411, "send the body with a Content-Length; chunked transfer is not supported")
        declared = self.headers.get("Content-Length", "0").strip()
        if not (declared.isascii() and declared.isdigit()):
            raise _Refused(400, "Content-Length must be a non-negative integer")
        length = int(declared)
        if length > MAX_BODY_BYTES:
            self._drain(length)
            raise _Refused(413, f"the body is {length} bytes; the limit is {MAX_BODY_BYTES}")
        if length == 0:
            return None  # API Gateway passes an absent body as null
        try:
            return self.rfile.read(length).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _Refused(400, f"the body is not valid UTF-8 (byte {exc.start})") from None

    def _check_method(self) -> None:
        """A documented path with a method the document does not give it is 405, naming the allowed ones."""
        path = urlsplit(self.path).path
        for pattern, methods in _documented_routes():
            if pattern.fullmatch(path) and self.command not in methods:
                allowed = ", ".join(methods)
                raise _Refused(405, f"{self.command} is not allowed on {path}; use {allowed}", [("Allow", allowed)])

    def _drain(self, length: int) -> None:
        if length > DRAIN_LIMIT_BYTES:
            return  # not worth reading: such a client may see a reset instead of the 413
        while length > 0:
            chunk = self.rfile.read(min(length, 64 * 1024))
            if not chunk:
                return
            length -= len(chunk)

    def _event(self, body: str | None) -> dict[str, Any]:
        """The REST API (v1) proxy event; the path stays as sent, so an encoded '/' cannot change the route."""
        url = urlsplit(self.path)
        query = parse_qs(url.query, keep_blank_values=True)
        headers: dict[str, list[str]] = {}
        for name, value in self.headers.items():
            headers.setdefault(name, []).append(value)
        return {
            "httpMethod": self.command,
            "path": url.path,
            "resource": url.path,  # API Gateway's route template; the handler does its own routing
            "headers": {name: values[-1] for name, values in headers.items()},
            "multiValueHeaders": headers,
            "queryStringParameters": {name: values[-1] for name, values in query.items()} or None,
            "multiValueQueryStringParameters": query or None,
            "pathParameters": None,
            "body": body,
            "isBase64Encoded": False,
            "requestContext": {
                "requestId": str(uuid.uuid4()),
                "stage": "local",
                "identity": {"sourceIp": self.client_address[0]},
                "httpMethod": self.command,
                "path": url.path,
            },
        }

    def _send_json(self, status: int, payload: dict[str, Any], headers: list[tuple[str, str]] | None = None) -> None:
        body = json.dumps(payload).encode("utf-8")
        self._send(status, [("Content-Type", "application/json"), *(headers or [])], body)

    def _send(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":  # a HEAD answer has the headers a body would have, never the body
            self.wfile.write(body)


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
    """The local API, bound on creation; serve it with start()/stop(), as a context manager, or serve_forever()."""

    def __init__(self, invoke: Invoke, host: str = "127.0.0.1", port: int = 0) -> None:
        self._httpd = _Server(loopback_address(host), port, invoke)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._httpd.server_port

    @property
    def url(self) -> str:
        return self._httpd.url

    def start(self) -> ApiServer:
        """Serve on a background thread."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._httpd.serve_forever, name=f"codeclab-api-{self.port}")
            self._thread.daemon = True
            self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve on this thread until it is interrupted (the CLI's Ctrl-C), then release the port."""
        try:
            self._httpd.serve_forever()
        finally:
            self._httpd.server_close()

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()  # only when serving: shutdown() waits for a serve_forever loop to end
            self._thread.join()
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> ApiServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()


def serve_api(invoke: Invoke, host: str = "127.0.0.1", port: int = 0) -> ApiServer:
    """A bound, not yet started, local API server on a loopback host (port 0: a free port)."""
    return ApiServer(invoke, host, port)
