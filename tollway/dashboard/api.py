"""The dashboard's Admin API routes: portal tokens (JSON), and the dashboard's pages (views.py).

    POST   /consumers/{consumer}/portal_tokens        a token (shown once) and the portal's URL
    GET    /consumers/{consumer}/portal_tokens        the consumer's tokens, without the tokens
    DELETE /consumers/{consumer}/portal_tokens/{id}   revoke one: its portal shows nothing from now on

A token lives `ttl` seconds (default 30 days, at most 366). Errors are Kong's shapes.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tollway.admin.body import read_body
from tollway.admin.context import AdminContext
from tollway.admin.errors import ApiError, schema_violation
from tollway.admin.responses import json_response
from tollway.billing import api_docs as docs
from tollway.dashboard import portal_tokens, views
from tollway.errors import NotFound


def parse_ttl(data: dict[str, Any]) -> int:
    """The body's ttl (seconds), checked; schema violations listing every problem otherwise."""
    problems: dict[str, str] = {}
    unknown = sorted(set(data) - {"ttl"})
    for name in unknown:
        problems[name] = "unknown field"
    ttl: Any = data.get("ttl", portal_tokens.DEFAULT_TTL)
    if isinstance(ttl, str) and ttl.strip().isdigit():
        ttl = int(ttl.strip())
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not 60 <= ttl <= portal_tokens.MAX_TTL:
        problems["ttl"] = f"expected an integer from 60 to {portal_tokens.MAX_TTL} (seconds)"
    if problems:
        raise schema_violation(problems)
    return int(ttl)


def routes(ctx: AdminContext) -> list[BaseRoute]:
    consumers = ctx.daos["consumers"]

    async def consumer_of(request: Request) -> dict[str, Any]:
        async with ctx.db.connect() as conn:
            found = await consumers.get(conn, request.path_params["parent"])
        if found is None:
            raise NotFound("consumers")
        return found

    async def create(request: Request) -> Response:
        who = await consumer_of(request)
        data, _form = await read_body(request)
        ttl = parse_ttl(data)
        async with ctx.db.begin() as conn:
            token, row = await portal_tokens.create(conn, who["id"], ttl, int(time.time()))
        return json_response({**row, "token": token, "url": views.portal_url(ctx.settings, request, token)}, 201)

    async def listed(request: Request) -> Response:
        who = await consumer_of(request)
        async with ctx.db.connect() as conn:
            found = await portal_tokens.of_consumer(conn, who["id"])
        return json_response({"data": found, "next": None})

    async def revoke(request: Request) -> Response:
        who = await consumer_of(request)
        async with ctx.db.begin() as conn:
            gone = await portal_tokens.revoke(conn, who["id"], request.path_params["ident"])
        if not gone:
            raise ApiError(404, {"message": "Not found"})
        return Response(status_code=204)

    return [
        Route("/consumers/{parent}/portal_tokens", create, methods=["POST"]),
        Route("/consumers/{parent}/portal_tokens", listed, methods=["GET"]),
        Route("/consumers/{parent}/portal_tokens/{ident}", revoke, methods=["DELETE"]),
        *views.routes(ctx),
    ]


TOKEN = docs.obj({"id": {"type": "string"}, "consumer": {"type": "object"}, "created_at": {"type": "integer"},
                  "expires_at": {"type": "integer"}}, ["id", "consumer", "created_at", "expires_at"])
OPENAPI: dict[str, Any] = {
    "/consumers/{parent}/portal_tokens": {
        "post": {"summary": "A portal token for the consumer: its usage portal's key, shown once",
                 "operationId": "create-portal-token", "tags": ["portal"], "parameters": [docs.CONSUMER],
                 "requestBody": docs.body({**docs.obj({"ttl": {
                     "type": "integer", "minimum": 60, "maximum": portal_tokens.MAX_TTL,
                     "description": "seconds the token is valid; default 30 days"}}),
                     "additionalProperties": False}),
                 "responses": {**docs.ok("the token and the portal's URL (null without portal_listen)", docs.obj({
                     **TOKEN["properties"], "token": {"type": "string"},
                     "url": {"type": "string", "nullable": True}}, ["id", "token"]), 201),
                     **docs.errors(e400="a bad ttl or an unknown field", e404="no such consumer",
                                   e415="the body is neither JSON, url-encoded nor multipart")}},
        "get": {"summary": "The consumer's portal tokens (never the tokens themselves)",
                "operationId": "list-portal-tokens", "tags": ["portal"], "parameters": [docs.CONSUMER],
                "responses": {**docs.ok("the tokens", docs.obj({"data": {"type": "array", "items": TOKEN},
                                                                "next": {"type": "string", "nullable": True}})),
                              **docs.errors(e404="no such consumer")}}},
    "/consumers/{parent}/portal_tokens/{ident}": {
        "delete": {"summary": "Revoke a portal token", "operationId": "revoke-portal-token", "tags": ["portal"],
                   "parameters": [docs.CONSUMER, docs.path_param("ident", "the token's id")],
                   "responses": {"204": {"description": "revoked"},
                                 **docs.errors(e404="no such consumer or token")}}},
}
