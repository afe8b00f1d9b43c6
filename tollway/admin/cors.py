"""What the Admin API tells browsers, as Kong's: CORS headers on every answer, OPTIONS on every path.

Every answer carries `Access-Control-Allow-Origin` and `Access-Control-Allow-Credentials: true`.
The origin is the request's `Origin` (or `*` without one), unless `admin_gui_url` names the web
GUIs allowed: then it is the request's origin when it is one of theirs, else the first of them.

`OPTIONS` on any path the app serves answers 204 with `Allow` (and the same
`Access-Control-Allow-Methods`): the path's methods with HEAD and OPTIONS, sorted, joined by ", ";
`Access-Control-Allow-Headers` echoes the request's `Access-Control-Request-Headers`, or says
`Content-Type`. On a path it does not serve, 404.

`Cors` adds the headers and runs outside the admin token guard, so a 401 carries them too;
`Options` answers OPTIONS behind it. The guard lets a browser's preflight through (it cannot carry
the token; it reads nothing), but not a plain OPTIONS.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

import orjson
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

NOT_FOUND = orjson.dumps({"message": "Not found"})


def gui_origins(urls: str) -> list[bytes]:
    """`scheme://host[:port]` of each URL of the admin_gui_url setting (the path dropped)."""
    found = []
    for url in filter(None, (item.strip() for item in urls.split(","))):
        parts = urlsplit(url)
        found.append(f"{parts.scheme}://{parts.netloc}".encode("latin-1"))
    return found


def allowed_methods(routes: Iterable[BaseRoute], path: str) -> list[str] | None:
    """The methods the app answers on `path` with HEAD and OPTIONS, sorted; None when no route serves it."""
    methods: set[str] = set()
    served = False
    for route in routes:
        if isinstance(route, Route) and route.path_regex.match(path):
            served = True
            methods |= set(route.methods or ())
    if not served:
        return None
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods | {"OPTIONS"})


class Cors:
    """ASGI middleware: CORS headers on every answer."""

    def __init__(self, app: ASGIApp, gui_urls: str = "") -> None:
        self.app = app
        self.origins = gui_origins(gui_urls)

    def allow_origin(self, origin: bytes | None) -> bytes:
        if not self.origins:
            return origin or b"*"
        return origin if origin in self.origins else self.origins[0]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        origin = next((value for name, value in scope.get("headers") or () if name == b"origin"), None)
        cors = [(b"access-control-allow-origin", self.allow_origin(origin)),
                (b"access-control-allow-credentials", b"true")]

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), *cors]}
            await send(message)

        await self.app(scope, receive, send_with_cors)


class Options:
    """ASGI middleware: answers OPTIONS for every path the app serves, 404 for the others."""

    def __init__(self, app: ASGIApp, routes: Callable[[], Iterable[BaseRoute]]) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "OPTIONS":
            await self.app(scope, receive, send)
            return
        path = scope["path"].rstrip("/") or "/"
        methods = allowed_methods(self.routes(), path)
        if methods is None:
            await send({"type": "http.response.start", "status": 404, "headers": [
                (b"content-type", b"application/json; charset=utf-8"),
                (b"content-length", str(len(NOT_FOUND)).encode())]})
            await send({"type": "http.response.body", "body": NOT_FOUND})
            return
        allow = ", ".join(methods).encode()
        asked = next((value for name, value in scope.get("headers") or ()
                      if name == b"access-control-request-headers"), b"Content-Type")
        await send({"type": "http.response.start", "status": 204, "headers": [
            (b"allow", allow), (b"access-control-allow-methods", allow), (b"access-control-allow-headers", asked)]})
        await send({"type": "http.response.body", "body": b""})
