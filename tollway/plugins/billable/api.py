"""GET /billable: metered usage per period, consumer, service, route and status (JSON or CSV)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from tollway.errors import StoreError
from tollway.metering.periods import iso
from tollway.metering.query import QueryError, UsageQuery, encode_offset
from tollway.metering.report import UsageReport


def _json(status: int, body: dict[str, Any]) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def _schema_violation(exc: QueryError) -> Response:
    return _json(400, {"code": 2, "name": "schema violation", "message": str(exc), "fields": exc.fields})


def _wants_csv(request: Request, query: UsageQuery) -> bool:
    if "csv" in request.query_params:
        return query.csv
    return "text/csv" in request.headers.get("accept", "")


def routes(ctx: Any) -> list[BaseRoute]:
    """The plugin's Admin API routes; `ctx` has `.db` (Database) and `.settings`."""

    async def billable(request: Request) -> Response:
        params = dict(request.query_params)
        try:
            query = UsageQuery.parse(params, time.time())
            report = await UsageReport.prepare(ctx.db, ctx.settings, query)
        except QueryError as exc:
            return _schema_violation(exc)
        except StoreError as exc:
            return _json(503, {"message": str(exc)})
        if _wants_csv(request, query):
            day = datetime.now(UTC).astimezone(query.tz).date().isoformat()
            filename = f"tollway-usage-{query.period}-{day}.csv"
            return StreamingResponse(report.csv_chunks(), media_type="text/csv; charset=utf-8",
                                     headers={"Content-Disposition": f'attachment; filename="{filename}"'})
        try:
            data, next_offset = await report.page()
        except StoreError as exc:
            return _json(503, {"message": str(exc)})
        next_path = None
        if next_offset is not None:
            params["offset"] = encode_offset(next_offset)
            next_path = request.url.path + "?" + urlencode(params)
        return _json(200, {
            "period": query.period,
            "start": iso(query.start, query.tz),
            "end": iso(query.end if query.end is not None else query.now, query.tz),
            "tz": query.tz.key,
            "data": data,
            "next": next_path,
        })

    return [Route("/billable", billable, methods=["GET"]), Route("/billable/", billable, methods=["GET"])]
