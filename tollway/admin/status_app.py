"""The status listener's application (Kong's status_listen): GET /status, and the read-only
routes of enabled plugins' status_api.py (the prometheus plugin's GET /metrics).

It holds no write route and no entity endpoint: a monitoring system may reach it where the Admin
API must not be reachable. Every other path answers 404, every other method 405, in Kong's shape.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import BaseRoute, Route

from tollway.admin.app import StripTrailingSlash, error_handlers
from tollway.admin.context import AdminContext
from tollway.admin.info import StatusExtra, status_endpoint
from tollway.config import Settings
from tollway.plugins import registry
from tollway.store.db import Database


def create_status_app(settings: Settings, db: Database, status_extra: StatusExtra | None = None) -> Starlette:
    """The status API for this configuration; status_extra() adds the master's figures to GET /status."""
    ctx = AdminContext(settings, db, node_status=status_extra)
    routes: list[BaseRoute] = [Route("/status", status_endpoint(ctx, status_extra), methods=["GET"])]
    for _owner, module in registry.parts(settings.enabled_plugins, "status_api"):
        routes.extend(module.routes(ctx))
    app = Starlette(routes=routes, exception_handlers=error_handlers())
    app.add_middleware(StripTrailingSlash)
    return app
