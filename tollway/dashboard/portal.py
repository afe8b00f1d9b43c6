"""The customers' usage portal, on its own listener (portal_listen): one consumer per token.

    GET /{token}                 the consumer's usage: calls, amount so far, meters, entitlements
    GET /{token}/figures?span=   the live region alone (htmx swaps it every few seconds)
    GET /static/{name}           the vendored libraries, CSS and script

The token (portal_tokens.py) is the only way in, and it names one consumer: every figure is read
for that consumer's id, with the dashboard's own code (figures.py). A token that names nobody (a
guess, revoked, expired) answers 404 with nothing in it, the same answer for each, so the
answer does not tell a guesser which tokens once existed.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from tollway.config import Settings
from tollway.dashboard import figures, pages, portal_tokens, static_files
from tollway.dashboard.html import HEADERS, chart, live, page
from tollway.errors import TollwayError
from tollway.store.db import Database
from tollway.store.entities.consumers import CONSUMERS
from tollway.store.entities.dao import Dao

log = logging.getLogger(__name__)

NOTHING = page("Not found", "<p>There is nothing here. Ask your provider for a new portal link.</p>",
               static="/static")


def create_portal_app(settings: Settings, db: Database) -> Starlette:
    consumers = Dao(CONSUMERS)

    async def owner(request: Request) -> dict[str, Any] | None:
        async with db.connect() as conn:
            consumer_id = await portal_tokens.consumer_of(conn, request.path_params["token"], int(time.time()))
            if consumer_id is None:
                return None
            return await consumers.get(conn, consumer_id)

    async def region(who: dict[str, Any], token: str, span: figures.Span) -> str:
        now = int(time.time())
        usage = await figures.consumer_usage(db, settings, who["id"], now)
        traffic = await figures.traffic(db, settings, span, now, consumer=who["id"])
        return live("portal-figures", f"/{token}/figures?span={span.name}", pages.usage_figures(usage, traffic),
                    "Usage")

    def span_of(request: Request) -> figures.Span:
        return figures.SPANS.get(request.query_params.get("span", ""), figures.SPANS["day"])

    async def portal(request: Request) -> Response:
        try:
            who = await owner(request)
            if who is None:
                return HTMLResponse(NOTHING, 404, headers=HEADERS)
            span = span_of(request)
            token = request.path_params["token"]
            body = (pages.span_links(f"/{token}", span.name)
                    + chart("traffic", "Your calls per minute by status class", "traffic-data")
                    + await region(who, token, span))
        except TollwayError as exc:
            log.warning("portal: %s", exc)
            return HTMLResponse(page("Unavailable", "<p role=\"alert\">Usage cannot be read right now.</p>",
                                     static="/static"), 503, headers=HEADERS)
        return HTMLResponse(page(f"Usage of {who.get('username') or who.get('custom_id') or who['id']}", body,
                                 static="/static"), headers=HEADERS)

    async def partial(request: Request) -> Response:
        try:
            who = await owner(request)
            if who is None:
                return Response("Not found", 404, media_type="text/plain", headers=HEADERS)
            return HTMLResponse(await region(who, request.path_params["token"], span_of(request)), headers=HEADERS)
        except TollwayError as exc:
            log.warning("portal: %s", exc)
            return Response("Unavailable", 503, media_type="text/plain", headers=HEADERS)

    async def nothing(_request: Request) -> Response:
        return HTMLResponse(NOTHING, 404, headers=HEADERS)

    return Starlette(routes=[
        Route("/static/{name}", static_files.serve, methods=["GET"]),
        Route("/{token}", portal, methods=["GET"]),
        Route("/{token}/figures", partial, methods=["GET"]),
        Route("/", nothing, methods=["GET"]),
    ])

