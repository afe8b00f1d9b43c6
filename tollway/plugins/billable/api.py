"""GET /billable: metered usage per period, consumer, service, route and status (JSON or CSV).

Parameters: period (minute, hour, day, week, month, year; default day), start and end (ISO 8601 or
epoch seconds; default this month), tz (IANA; default UTC), consumer, service and route (an id or
a name; `-` selects calls without one, e.g. `consumer=-` for unauthenticated calls), status (200
or 4xx), group_by (a subset of consumer,service,route,status), size, offset, csv (or
Accept: text/csv). Errors use Kong's shapes (tollway.admin.errors).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from tollway.admin.errors import ApiError, from_store_error, schema_violation
from tollway.errors import StoreError
from tollway.metering.periods import iso
from tollway.metering.query import QueryError, UsageQuery, encode_offset
from tollway.metering.report import UsageReport


def _json(status: int, body: dict[str, Any]) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def _error(exc: QueryError | StoreError) -> Response:
    """Kong's answer: a schema violation (400), or the database being unavailable (503)."""
    error: ApiError
    if isinstance(exc, QueryError):
        error = schema_violation(exc.fields)
    else:
        error = from_store_error(exc) or ApiError(503, {"message": str(exc)})
    return _json(error.status, error.body)


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
        except (QueryError, StoreError) as exc:
            return _error(exc)
        if _wants_csv(request, query):
            day = datetime.now(UTC).astimezone(query.tz).date().isoformat()
            filename = f"tollway-usage-{query.period}-{day}.csv"
            return StreamingResponse(report.csv_chunks(), media_type="text/csv; charset=utf-8",
                                     headers={"Content-Disposition": f'attachment; filename="{filename}"'})
        try:
            data, next_offset = await report.page()
        except StoreError as exc:
            return _error(exc)
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
