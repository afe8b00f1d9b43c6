"""Responses the gateway writes itself: status lines, Kong-shaped JSON errors, plugin replies.

Everything that can be computed once is: `STATUS_LINE[code]` is the ready-to-write first line of a
response, and the bodies of the gateway's own errors are encoded at import time.
"""

from __future__ import annotations

import http
from typing import Any

import orjson

from tollway import __version__
from tollway.plugins.base import Reply

__all__ = [
    "Rejected", "STATUS_LINE", "SERVER", "CONTINUE", "MSG_NO_ROUTE", "MSG_BAD_GATEWAY", "MSG_UNAVAILABLE",
    "MSG_TIMEOUT", "MSG_BAD_REQUEST", "MSG_UNEXPECTED", "MSG_METHOD_NOT_ALLOWED", "MSG_REQUEST_TIMEOUT",
    "MSG_BODY_TOO_LARGE", "MSG_URI_TOO_LONG", "MSG_HEADERS_TOO_LARGE", "MSG_VERSION", "error_body",
    "https_required", "render", "reply_headers",
]


def _status_line(code: int) -> bytes:
    try:
        phrase = http.HTTPStatus(code).phrase
    except ValueError:
        phrase = ""
    return b"".join([b"HTTP/1.1 ", str(code).encode(), b" ", phrase.encode(), b"\r\n"])


STATUS_LINE: dict[int, bytes] = {code: _status_line(code) for code in range(100, 600)}
SERVER = f"tollway/{__version__}".encode()
SERVER_HEADER = b"Server: " + SERVER + b"\r\n"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
JSON_TYPE = b"Content-Type: application/json; charset=utf-8\r\n"

# Kong's messages for the answers the gateway gives itself.
MSG_NO_ROUTE = "no Route matched with those values"
MSG_BAD_GATEWAY = "An invalid response was received from the upstream server"
MSG_UNAVAILABLE = "The upstream server is unavailable: it refused the connection"
MSG_NO_NAME = "The upstream server's name could not be resolved"
MSG_TIMEOUT = "The upstream server is timed out"
MSG_BAD_REQUEST = "Bad request"
MSG_UNEXPECTED = "An unexpected error occurred"
MSG_USE_HTTPS = "Please use HTTPS protocol"
# What the proxy answers to requests it refuses before they reach an upstream (Kong's wording).
MSG_METHOD_NOT_ALLOWED = "Method not allowed"
MSG_REQUEST_TIMEOUT = "Request timeout"
MSG_BODY_TOO_LARGE = "Request size limit exceeded"
MSG_URI_TOO_LONG = "URI too long"
MSG_HEADERS_TOO_LARGE = "Request header or cookie too large"
MSG_VERSION = "HTTP version not supported"


class Rejected(Exception):
    """A request refused before it reaches an upstream: answered `status` with `message` in Kong's
    shape, then the connection closes. Raised where the request breaks (a parser callback)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error_body(message: str) -> bytes:
    """`{"message": ...}`, the shape of every error Kong answers itself."""
    return orjson.dumps({"message": message})


def https_required(redirect: int | None, host: str, target: str) -> Reply:
    """Kong's answer to plain http on an https-only route.

    With no `redirect` status, 426 asking for a TLS upgrade; else that status, with an empty body
    and a Location of the same request over https (`host` without its port, `target` as sent).
    """
    if redirect is None:
        return Reply(426, {"message": MSG_USE_HTTPS}, {"Connection": "Upgrade", "Upgrade": "TLS/1.2, HTTP/1.1"})
    return Reply(redirect, None, {"Location": "".join(["https://", host, target])})


def reply_headers(reply: Reply) -> list[tuple[bytes, bytes]]:
    """A Reply's headers as header lines are written."""
    return [(name.encode("latin-1"), str(value).encode("latin-1")) for name, value in reply.headers.items()]


def render(reply: Reply, keep_alive: bool, head_only: bool = False, extra: list[bytes] | None = None,
           headers: list[tuple[bytes, bytes]] | None = None) -> tuple[bytes, int]:
    """One gateway response as bytes ready to write, and its status.

    A dict body is sent as JSON; `headers` replace the Reply's own (as reply_headers() gives
    them, changed); `extra` holds ready header lines (`b"Via: ...\\r\\n"`). With `head_only` (a
    HEAD request) the Content-Length is kept but the body is not sent.
    """
    body: Any = reply.body
    if headers is None:
        headers = reply_headers(reply)
    if isinstance(body, dict):
        payload = orjson.dumps(body)
        content_type = JSON_TYPE
    elif body is None:
        payload = b""
        content_type = b""
    else:
        payload = bytes(body)
        content_type = b""
    parts = [STATUS_LINE.get(reply.status) or _status_line(reply.status)]
    has_type = False
    for name, value in headers:
        if name.lower() == b"content-type":
            has_type = True
        parts.append(b"".join([name, b": ", value, b"\r\n"]))
    if content_type and not has_type:
        parts.append(content_type)
    parts.append(SERVER_HEADER)
    if extra:
        parts.extend(extra)
    no_body = reply.status < 200 or reply.status in (204, 304)
    if not no_body:
        parts.append(b"Content-Length: %d\r\n" % len(payload))
    parts.append(b"Connection: keep-alive\r\n\r\n" if keep_alive else b"Connection: close\r\n\r\n")
    if not head_only and not no_body:
        parts.append(payload)
    return b"".join(parts), reply.status
