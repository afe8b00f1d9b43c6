"""The Admin API application: info routes, generated entity routes, plugins' api.py routes.

Paths answer with or without a trailing slash; every error is JSON in Kong's shape, store errors
are translated here (409, 400, 503), and nothing a client sends ends in a 500 with a traceback.
Every answer carries Kong's CORS headers and OPTIONS answers on every path (cors.py).
With `admin_token` set, every call must carry it (guard.py); the OpenAPI document of the whole
app is GET /openapi.json (openapi.py); key-auth keys in paths are redacted from uvicorn's logs.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from tollway.admin import errors, openapi, redact, tags
from tollway.admin.context import AdminContext
from tollway.admin.cors import Cors, Options
from tollway.admin.endpoints import entity_routes
from tollway.admin.guard import AdminTokenGuard
from tollway.admin.info import StatusExtra, info_routes
from tollway.admin.responses import json_response
from tollway.config import Settings
from tollway.errors import StoreError
from tollway.plugins import registry
from tollway.store.db import Database

log = logging.getLogger(__name__)

HTTP_MESSAGES = {404: "Not found", 405: "Method not allowed"}


class StripTrailingSlash:
    """`/consumers/poppy/key-auth/` is `/consumers/poppy/key-auth`, without a redirect."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and len(scope["path"]) > 1 and scope["path"].endswith("/"):
            path = scope["path"].rstrip("/") or "/"
            scope = {**scope, "path": path, "raw_path": path.encode()}
        await self.app(scope, receive, send)


async def _api_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, errors.ApiError)
    return json_response(exc.body, exc.status)


async def _http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = HTTP_MESSAGES.get(exc.status_code, exc.detail)
    return json_response({"message": message}, exc.status_code, headers=dict(exc.headers or {}))


async def _store_error(_request: Request, exc: Exception) -> Response:
    mapped = errors.from_store_error(exc)
    if mapped is None:
        log.error("store error: %s", exc)
        return json_response({"message": "An unexpected error occurred"}, 500)
    return json_response(mapped.body, mapped.status)


async def _unexpected(_request: Request, exc: Exception) -> Response:
    log.exception("unexpected error in the Admin API", exc_info=exc)
    return json_response({"message": "An unexpected error occurred"}, 500)


def error_handlers() -> dict[Any, Callable[[Request, Exception], Any]]:
    """Every error as JSON in Kong's shape, store errors translated, never a traceback."""
    return {
        errors.ApiError: _api_error,
        HTTPException: _http_error,
        StoreError: _store_error,
        Exception: _unexpected,
    }


def plugin_routes(ctx: AdminContext) -> list[BaseRoute]:
    """Routes of every core component and enabled plugin that has an api.py."""
    found: list[BaseRoute] = []
    for _owner, module in registry.parts(ctx.settings.enabled_plugins, "api"):
        found.extend(module.routes(ctx))
    return found


def create_app(settings: Settings, db: Database, on_change: Callable[[], None] | None = None,
               status_extra: StatusExtra | None = None, *, node_id: str | None = None) -> Starlette:
    """The Admin API for this configuration; on_change() runs after every successful write and
    status_extra() adds to (or overrides parts of) GET /status, e.g. the master's server stats."""
    ctx = AdminContext(settings, db, on_change, node_status=status_extra)
    routes: list[BaseRoute] = []

    document: dict[str, Any] = {}

    def endpoints() -> list[str]:
        return sorted({r.path for r in routes if isinstance(r, Route)})

    def openapi_document() -> dict[str, Any]:
        if not document:  # built on first use: the routes are all known by then
            document.update(openapi.build(settings, routes, ctx.entities.values()))
        return document

    routes += info_routes(ctx, node_id=node_id or _node_id(settings), status_extra=status_extra,
                          endpoints=endpoints, openapi=openapi_document)
    routes += tags.routes(ctx)
    routes += plugin_routes(ctx)  # before the generated ones: /billable is not /{entity}
    routes += entity_routes(ctx)
    app = Starlette(routes=routes, exception_handlers=error_handlers())
    app.state.ctx = ctx
    # Outermost last: CORS headers, the token guard, OPTIONS answers, then routing.
    app.add_middleware(StripTrailingSlash)
    app.add_middleware(Options, routes=lambda: routes)
    if settings.admin_token:
        app.add_middleware(AdminTokenGuard, token=settings.admin_token)
    app.add_middleware(Cors, gui_urls=settings.admin_gui_url)
    redact.install(ctx.entities.values())
    return app


def _node_id(settings: Settings) -> str:
    """The node id the server keeps in PREFIX/node_id, or a fresh one when there is none yet."""
    try:
        return (settings.prefix_path / "node_id").read_text().strip() or str(uuid.uuid4())
    except OSError:
        return str(uuid.uuid4())
