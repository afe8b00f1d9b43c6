"""The admin token: when `admin_token` is set, every Admin API call must carry it.

Sent in `Tollway-Admin-Token` (or `Kong-Admin-Token`, Kong Enterprise's header, so that Kong
tooling works unchanged); compared in constant time. Every path is protected, /status too, as
Kong protects its whole Admin API: the node's own health check sends the header. A missing or
wrong token is answered 401 in Kong's words, before any routing (an unknown path is 401 too).
The dashboard's pages (/dashboard and below) pass: they ask for the token once, in a login form,
and check their own session cookie (tollway/dashboard/session.py); that cookie opens no JSON route.
A browser's CORS preflight (OPTIONS with Origin and Access-Control-Request-Method) passes without
it: a browser cannot add the token to a preflight, and the answer reads nothing (cors.py).
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

HEADER = "Tollway-Admin-Token"
HEADERS = (b"tollway-admin-token", b"kong-admin-token")
PAGES = "/dashboard"  # guarded by the dashboard's own session
INVALID = {"message": "Invalid credentials. Token or User credentials required"}


def token_headers(token: str) -> dict[str, str]:
    """The headers a client (the CLI's health check) sends to pass the guard."""
    return {HEADER: token} if token else {}


def is_preflight(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    names = {name.lower() for name, _ in headers}
    return b"origin" in names and b"access-control-request-method" in names


class AdminTokenGuard:
    """ASGI middleware: 401 unless the request carries the token."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token.encode()
        self.refusal = orjson.dumps(INVALID)

    def allows(self, scope: Scope) -> bool:
        path = scope.get("path", "")
        if path == PAGES or path.startswith(PAGES + "/"):
            return True
        headers = scope.get("headers") or ()
        for name, value in headers:
            if name.lower() in HEADERS and hmac.compare_digest(value, self.token):
                return True
        return scope.get("method") == "OPTIONS" and is_preflight(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.allows(scope):
            await self.app(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": 401, "headers": [
            (b"content-type", b"application/json; charset=utf-8"),
            (b"content-length", str(len(self.refusal)).encode()),
        ]})
        await send({"type": "http.response.body", "body": self.refusal})
