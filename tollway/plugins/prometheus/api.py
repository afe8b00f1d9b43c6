"""GET /metrics on the Admin API (and, through status_api.py, on the status listener)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tollway.errors import StoreError
from tollway.plugins.prometheus.exporter import CONTENT_TYPE, NODE, render

OPENAPI = {
    "/metrics": {
        "get": {
            "summary": "Metrics in Prometheus' text format (the prometheus plugin)",
            "responses": {"200": {"description": "kong_* and tollway_* metrics",
                                  "content": {"text/plain": {"schema": {"type": "string"}}}}},
        },
    },
}


async def _database_reachable(ctx: Any) -> bool:
    try:
        async with ctx.db.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except (StoreError, OSError):
        return False
    return True


def routes(ctx: Any) -> list[BaseRoute]:
    """`ctx` is the Admin API's context: `.db`, and `.node_status()` (GET /status's figures)."""

    async def metrics(_request: Request) -> Response:
        reachable = await _database_reachable(ctx)
        status = ctx.node_status() if ctx.node_status is not None else {}
        # On the master's loop, where the workers' reports are added: NODE never changes mid-scrape.
        body = render(NODE, status, reachable)
        return Response(body, media_type=CONTENT_TYPE)

    return [Route("/metrics", metrics, methods=["GET"])]
