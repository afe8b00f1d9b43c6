"""Billing's Admin API routes beyond the generated CRUD of its entities (daos.py).

    POST /pricing/simulate                       a plan's lines and total for some usage
    GET  /consumers/{consumer}/usage             the current billing period: units, money, entitlements
    GET  /plans/{plan}/versions[/{version}]      a plan's recorded versions (its history)
    POST /plans/{plan}/versions                  record the head as a version now (200 if unchanged)
    POST, PATCH, PUT, DELETE on subscriptions, POST .../cancel: api_subscriptions.py
    /invoices, /credit_notes: api_invoices.py

Errors are Kong's shapes: store errors are translated by the app, billing's here.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tollway.admin.body import read_body
from tollway.admin.context import AdminContext
from tollway.admin.errors import ApiError
from tollway.admin.responses import json_response
from tollway.billing import api_docs as docs
from tollway.billing import api_invoices, api_subscriptions, plan_store, simulation, usage_reads
from tollway.billing.ledger_usage import RetentionExceeded
from tollway.errors import NotFound


def routes(ctx: AdminContext) -> list[BaseRoute]:
    consumers = ctx.daos["consumers"]

    async def simulate(request: Request) -> Response:
        data, _form = await read_body(request)
        wanted = simulation.parse(data)
        async with ctx.db.connect() as conn:
            return json_response(await simulation.simulate(conn, wanted))

    async def usage(request: Request) -> Response:
        now = int(time.time())
        async with ctx.db.connect() as conn:  # one connection: SQLite opens one per use
            consumer = await consumers.get(conn, request.path_params["parent"])
            if consumer is None:
                raise NotFound("consumers")
            found = await usage_reads.active_reading(conn, consumer["id"], now)
            if found is None:
                raise ApiError(404, {"message": f"consumer '{consumer.get('username') or consumer['id']}' "
                                                "has no active subscription"})
            try:
                answer = (await usage_reads.answers(conn, ctx.settings, [found], now))[0]
            except RetentionExceeded as exc:
                raise ApiError(409, {"message": str(exc)}) from None
        who = {"id": consumer["id"], "username": consumer.get("username"), "custom_id": consumer.get("custom_id")}
        return json_response({"consumer": who, **answer})

    async def versions(request: Request) -> Response:
        async with ctx.db.connect() as conn:
            plan = await plan_store.read_plan(conn, request.path_params["parent"])
            found = await plan_store.list_versions(conn, plan["id"])
        return json_response({"data": [item.to_json() for item in found], "next": None})

    async def record(request: Request) -> Response:
        async with ctx.db.connect() as conn:
            plan = await plan_store.read_plan(conn, request.path_params["parent"])
        async with ctx.write() as conn:
            stored, new = await plan_store.ensure_version(conn, plan)
        return json_response(stored.to_json(), 201 if new else 200)

    async def version(request: Request) -> Response:
        number = plan_store.parse_version_number(request.path_params["version"])
        async with ctx.db.connect() as conn:
            plan = await plan_store.read_plan(conn, request.path_params["parent"])
            stored = None if number is None else await plan_store.read_version(conn, plan["id"], number)
        if stored is None:
            raise NotFound("plan_versions")
        return json_response(stored.to_json())

    return [
        Route("/pricing/simulate", simulate, methods=["POST"]),
        Route("/consumers/{parent}/usage", usage, methods=["GET"]),
        Route("/plans/{parent}/versions", versions, methods=["GET"]),
        Route("/plans/{parent}/versions", record, methods=["POST"]),
        Route("/plans/{parent}/versions/{version}", version, methods=["GET"]),
        *api_subscriptions.routes(ctx),
        *api_invoices.routes(ctx),
    ]


AMOUNT = {"type": "string", "description": "rounded once, half up, to the currency's minor unit"}
MINOR = {"type": "integer", "description": "the amount in minor units (cents)"}
LINE = docs.obj({"kind": {"type": "string"}, "meter": {"type": "string", "nullable": True},
                 "model": {"type": "string", "nullable": True}, "units": {"type": "string", "nullable": True},
                 "tiers": {"type": "array", "items": {"type": "object"}},
                 "amount": AMOUNT, "amount_minor": MINOR})
VERSION = docs.obj({"plan": {"type": "object"}, "version": {"type": "integer"}, "created_at": {"type": "integer"},
                    "definition": {"type": "object"}}, ["plan", "version", "created_at", "definition"])
UNITS = {"oneOf": [{"type": "integer", "minimum": 0}, {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?$"}]}

SIMULATE = {**docs.obj({
    "plan": {"type": "string", "minLength": 1, "description": "the plan's name or id"},
    "version": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1,
                "description": "a recorded version; default: the head"},
    "usage": {"type": "object", "additionalProperties": UNITS,
              "description": "meter name -> units (an integer or a decimal string)"}}, ["plan"]),
    "additionalProperties": False}

OPENAPI: dict[str, Any] = {
    "/pricing/simulate": {"post": {
        "summary": "Price some usage with a plan: lines with their tiers, base fee, total",
        "operationId": "pricing-simulate", "tags": ["pricing"],
        "requestBody": docs.body(SIMULATE, required=True, form={  # a form gives usage as usage.{meter}=
            **SIMULATE, "properties": {k: v for k, v in SIMULATE["properties"].items() if k != "usage"}}),
        "responses": {**docs.ok("the quote", docs.obj({
            "plan": {"type": "object"}, "plan_version": {"type": "integer", "nullable": True},
            "currency": {"type": "string"}, "lines": {"type": "array", "items": LINE},
            "total": AMOUNT, "total_minor": MINOR})),
            **docs.errors(e400="a bad field: an unknown plan, version or meter, bad units",
                          e415="the body is neither JSON, url-encoded nor multipart")}}},
    "/consumers/{parent}/usage": {"get": {
        "summary": "A consumer's current billing period: units and amount per meter, entitlements",
        "operationId": "consumer-usage", "tags": ["subscriptions"], "parameters": [docs.CONSUMER],
        "responses": {**docs.ok("the usage so far", docs.obj({
            "consumer": {"type": "object"}, "subscription": {"type": "object"}, "period": {"type": "object"},
            "counted_from": {"type": "string"}, "as_of": {"type": "string"}, "currency": {"type": "string"},
            "meters": {"type": "array", "items": {"type": "object"}}, "base_fee": LINE,
            "minimum_commitment": {"type": "object", "nullable": True}, "total": AMOUNT, "total_minor": MINOR,
            "entitlements": {"type": "array", "items": {"type": "object"}}})),
            **docs.errors(e404="no such consumer, or it has no active subscription",
                          e409="the period needs ledger rows older than their retention")}}},
    "/plans/{parent}/versions": {
        "get": {"summary": "A plan's recorded versions, oldest first", "operationId": "plan-versions",
                "tags": ["plans"], "parameters": [docs.PLAN],
                "responses": {**docs.ok("the versions", docs.obj({
                    "data": {"type": "array", "items": VERSION}, "next": {"type": "string", "nullable": True}})),
                    **docs.errors(e404="no such plan")}},
        "post": {"summary": "Record the plan's head as a version (the latest one if unchanged)",
                 "operationId": "record-plan-version", "tags": ["plans"], "parameters": [docs.PLAN],
                 "responses": {**docs.ok("a new version", VERSION, 201), **docs.ok("the latest, unchanged", VERSION),
                               **docs.errors(e404="no such plan")}}},
    "/plans/{parent}/versions/{version}": {"get": {
        "summary": "One recorded version of a plan", "operationId": "plan-version", "tags": ["plans"],
        "parameters": [docs.PLAN, docs.path_param("version", "the version number (from 1)")],
        "responses": {**docs.ok("the version", VERSION), **docs.errors(e404="no such plan or version")}}},
    **api_subscriptions.OPENAPI,
    **api_invoices.OPENAPI,
}
