"""Kong's /tags: every tag of every entity, as `{tag, entity_name, entity_id}`, in pages.

    GET /tags            every tagged entity once per tag, ordered by tag, entity name and id
    GET /tags/{tag}      those with this tag

decK asks GET /tags to learn whether the Admin API knows tags. Pages are Kong's (`size`,
`offset`, `next`); the offset names the last row of the previous page.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import urlencode

import orjson
from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tollway.admin import errors
from tollway.admin.context import AdminContext
from tollway.admin.pagination import PageQuery
from tollway.admin.responses import json_response

TagRow = tuple[str, str, str]  # (tag, entity name, entity id)


def _encode(row: TagRow) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(list(row))).decode().rstrip("=")


def _decode(offset: str) -> TagRow:
    try:
        row = orjson.loads(base64.urlsafe_b64decode(offset + "=" * (-len(offset) % 4)))
    except (binascii.Error, ValueError):
        raise errors.invalid_offset(offset, "bad base64 encoding") from None
    if not (isinstance(row, list) and len(row) == 3 and all(isinstance(part, str) for part in row)):
        raise errors.invalid_offset(offset, "bad json encoding")
    return row[0], row[1], row[2]


async def _rows(ctx: AdminContext, only: str | None) -> list[TagRow]:
    found: list[TagRow] = []
    async with ctx.db.connect() as conn:
        for name, dao in ctx.daos.items():
            table = dao.table
            if "tags" not in table.c:
                continue
            query = select(table.c.id, table.c.tags).where(table.c.tags.is_not(None))
            for entity_id, text in await conn.execute(query):
                for tag in orjson.loads(text) or ():
                    if only is None or tag == only:
                        found.append((tag, name, entity_id))
    return sorted(set(found))


def routes(ctx: AdminContext) -> list[BaseRoute]:
    async def listing(request: Request) -> Response:
        tag: str | None = request.path_params.get("tag")
        if tag is not None and "\ufffd" in tag:  # what a byte that is not UTF-8 decodes to
            raise errors.ApiError(400, {"message": "invalid tag: invalid utf-8 sequence"})
        page = PageQuery.parse({k: v for k, v in request.query_params.items() if k == "size"})
        offset = request.query_params.get("offset")
        after = _decode(offset) if offset else None
        rows = [row for row in await _rows(ctx, tag) if after is None or row > after]
        shown, more = rows[:page.size], len(rows) > page.size
        body: dict[str, Any] = {
            "data": [{"tag": t, "entity_name": name, "entity_id": ident} for t, name, ident in shown],
            "next": None}
        if more:
            offset = _encode(shown[-1])
            body["offset"] = offset
            body["next"] = f"{request.url.path}?{urlencode({'offset': offset, **page.given})}"
        return json_response(body)

    return [Route("/tags", listing, methods=["GET"]), Route("/tags/{tag}", listing, methods=["GET"])]
