"""JSON answers, encoded with orjson."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, headers=headers,
                    media_type="application/json; charset=utf-8")


def no_content() -> Response:
    return Response(status_code=204)
