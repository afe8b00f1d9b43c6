"""Subscription writes on the Admin API (reads are the generic ones): these routes come before the
generated ones, so POST, PATCH, PUT and DELETE on /subscriptions and
/consumers/{consumer}/subscriptions keep the timeline (subscription_writes.py), and
POST .../cancel ends a subscription now or at the end of its billing period.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tollway.admin.body import read_body
from tollway.admin.context import AdminContext
from tollway.admin.errors import UNIQUE_VIOLATION, DbError
from tollway.admin.responses import json_response, no_content
from tollway.billing import api_docs as docs
from tollway.billing import subscription_writes as writes
from tollway.billing.errors import SubscriptionConflict
from tollway.errors import SchemaViolation
from tollway.store.entities.crud import Parent

CANCEL_AT = ("now", "period_end")
Endpoint = Callable[[Request], Awaitable[Response]]


def conflict(exc: SubscriptionConflict, consumer: Any) -> DbError:
    return DbError(UNIQUE_VIOLATION, str(exc), {"consumer": consumer, "subscription": {"id": exc.other}})


def routes(ctx: AdminContext) -> list[BaseRoute]:
    public = ctx.crud(writes.NAME).schema.public
    consumers = ctx.crud("consumers")

    async def parent_of(request: Request) -> Parent | None:
        if "parent" not in request.path_params:
            return None
        found = await consumers.read(request.path_params["parent"])
        return Parent("consumer", found["id"])

    async def collection(request: Request) -> Response:
        parent = await parent_of(request)
        data, form = await read_body(request)
        try:
            entity = await writes.create(ctx, data, form=form, parent=parent)
        except SubscriptionConflict as exc:
            raise conflict(exc, data.get("consumer")) from None
        return json_response(public(entity), 201)

    async def entity(request: Request) -> Response:
        parent = await parent_of(request)
        ident = request.path_params["ident"]
        if request.method == "DELETE":
            await writes.delete(ctx, ident, parent=parent)
            return no_content()
        data, form = await read_body(request)
        if request.method == "PATCH":
            return json_response(public(await writes.update(ctx, ident, data, form=form, parent=parent)))
        try:
            found, created = await writes.upsert(ctx, ident, data, form=form, parent=parent)
        except SubscriptionConflict as exc:
            raise conflict(exc, data.get("consumer")) from None
        return json_response(public(found), 201 if created else 200)

    async def cancel(request: Request) -> Response:
        parent = await parent_of(request)
        data, _form = await read_body(request)
        unknown = {key: "unknown field" for key in data if key != "at"}
        at = data.get("at", "period_end")
        if at not in CANCEL_AT:
            unknown["at"] = "expected one of: " + ", ".join(CANCEL_AT)
        if unknown:
            raise SchemaViolation(unknown)
        found = await writes.cancel(ctx, request.path_params["ident"], at == "period_end", parent=parent)
        return json_response(public(found))

    found: list[BaseRoute] = []
    for base in ("/subscriptions", "/consumers/{parent}/subscriptions"):
        found += [Route(base, collection, methods=["POST"]),
                  Route(base + "/{ident}", entity, methods=["PATCH", "PUT", "DELETE"]),
                  Route(base + "/{ident}/cancel", cancel, methods=["POST"])]
    return found


def _cancel_doc(nested: bool) -> dict[str, Any]:
    params = [docs.path_param("ident", "the subscription's id")]
    if nested:
        params.insert(0, docs.CONSUMER)
    at = {"type": "string", "enum": list(CANCEL_AT), "default": "period_end",
          "description": "now: ends with the current minute; period_end: at the end of the billing period"}
    return {"post": {
        "summary": "Cancel a subscription now or at the end of its billing period",
        "operationId": "cancel-subscription" + ("-of-consumers" if nested else ""),
        "tags": ["subscriptions"], "parameters": params,
        "requestBody": docs.body({**docs.obj({"at": at}), "additionalProperties": False}),
        "responses": {
            **docs.ok("the subscription, with ends_at set", {"$ref": "#/components/schemas/Subscriptions"}),
            **docs.errors(e400="a bad `at`, or the subscription has ended", e404="no such subscription (or consumer)",
                          e415="the body is neither JSON, url-encoded nor multipart")}}}


OPENAPI: dict[str, Any] = {
    "/subscriptions/{ident}/cancel": _cancel_doc(nested=False),
    "/consumers/{parent}/subscriptions/{ident}/cancel": _cancel_doc(nested=True),
}
