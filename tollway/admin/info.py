"""Node information endpoints: GET /, /status, /plugins/enabled, /schemas/plugins/{name}, /endpoints."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import select, text
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tollway import __version__, plugins
from tollway.admin.context import AdminContext
from tollway.admin.responses import json_response
from tollway.errors import StoreError
from tollway.store.entities.plugins import BASE_FIELDS, config_field
from tollway.store.tables import plugins as plugin_rows

SECRET_SETTINGS = ("pg_password", "admin_token")
HIDDEN = "******"  # a secret setting's value as GET / shows it, as Kong's
# The Kong Gateway release whose Admin API this one answers as: decK and go-kong read `version`
# (a semantic version; 3.x means files in `_format_version: "3.0"`). Tollway's own is under "tollway".
KONG_VERSION = "3.9.3"
StatusExtra = Callable[[], Mapping[str, Any]]


def kong_fields(fields: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Fields in Kong's schema format: a list of one-key objects, records nested the same way."""
    out: list[dict[str, Any]] = []
    for name, spec in fields.items():
        shown = {k: list(v) if isinstance(v, tuple) else v for k, v in spec.items()
                 if k not in ("auto", "starts_with_message", "tag", "name")}
        if spec["type"] == "record":
            shown["fields"] = kong_fields(spec.get("fields", {}))
        out.append({name: shown})
    return out


def status_endpoint(ctx: AdminContext, status_extra: StatusExtra | None) -> Callable[[Request], Any]:
    """GET /status: database reachability and Kong's `server` counters, with what status_extra()
    adds (the master's figures); served on the Admin API and on the status listener."""

    async def status(_request: Request) -> Response:
        reachable = True
        try:
            async with ctx.db.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except (StoreError, OSError):
            reachable = False
        body: dict[str, Any] = {
            "database": {"reachable": reachable},
            "server": {"connections_accepted": 0, "connections_active": 0, "connections_handled": 0,
                       "connections_reading": 0, "connections_waiting": 0, "connections_writing": 0,
                       "total_requests": 0},
        }
        for key, value in (status_extra() if status_extra else {}).items():
            body[key] = {**body[key], **value} if isinstance(body.get(key), dict) and isinstance(value, dict) \
                else value
        return json_response(body)

    return status


def info_routes(ctx: AdminContext, *, node_id: str, status_extra: StatusExtra | None,
                endpoints: Callable[[], list[str]], openapi: Callable[[], Mapping[str, Any]]) -> list[BaseRoute]:
    """The informational routes; `endpoints` lists every path of the app (for GET /endpoints),
    `openapi` gives its OpenAPI document."""

    async def root(_request: Request) -> Response:
        async with ctx.db.connect() as conn:
            names = sorted(await conn.scalars(select(plugin_rows.c.name).distinct()))
        settings = {k: HIDDEN if k in SECRET_SETTINGS and v else v for k, v in ctx.settings.to_dict().items()}
        workers = [w for w in (status_extra() if status_extra else {}).get("workers") or ()
                   if isinstance(w, dict) and "pid" in w]
        return json_response({
            "version": KONG_VERSION,
            "edition": "community",
            "tagline": "Welcome to kong",
            "tollway": {"version": __version__, "tagline": "Welcome to tollway"},
            "hostname": socket.gethostname(),
            "node_id": node_id,
            "pids": {"master": os.getpid(), "workers": [w["pid"] for w in workers]},
            "plugins": {
                "available_on_server": {
                    name: {"version": __version__, "priority": plugins.schema(name)["priority"]}
                    for name in ctx.settings.enabled_plugins},
                "enabled_in_cluster": names,
            },
            # what Kong clients read besides `database`: go-kong's portal (bool) and rbac ("on"/"off")
            "configuration": {**settings, "loaded_plugins": list(ctx.settings.enabled_plugins),
                              "role": "traditional", "portal": False, "rbac": "off"},
        })

    async def enabled(_request: Request) -> Response:
        return json_response({"enabled_plugins": list(ctx.settings.enabled_plugins)})

    async def plugin_schema(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in ctx.settings.enabled_plugins:
            return json_response({"message": f"No plugin named '{name}'"}, 404)
        fields = {**BASE_FIELDS, "config": config_field(name)}
        return json_response({"fields": kong_fields(fields)})

    async def list_endpoints(_request: Request) -> Response:
        return json_response({"data": endpoints()})

    async def openapi_document(_request: Request) -> Response:
        return json_response(openapi())

    return [
        Route("/", root, methods=["GET"]),
        Route("/status", status_endpoint(ctx, status_extra), methods=["GET"]),
        Route("/plugins/enabled", enabled, methods=["GET"]),
        Route("/schemas/plugins/{name}", plugin_schema, methods=["GET"]),
        Route("/endpoints", list_endpoints, methods=["GET"]),
        Route("/openapi.json", openapi_document, methods=["GET"]),
    ]
