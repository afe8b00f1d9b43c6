"""The dashboard's static files (vendored libraries, its CSS and script), read once, served with
an ETag so a browser revalidates instead of downloading again."""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response

FOLDER = Path(__file__).parent / "static"
TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}


@cache
def _load(name: str) -> tuple[bytes, str, str] | None:
    path = FOLDER / name
    if "/" in name or name.startswith(".") or path.suffix not in TYPES or not path.is_file():
        return None
    body = path.read_bytes()
    return body, TYPES[path.suffix], '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


async def serve(request: Request) -> Response:
    found = _load(request.path_params["name"])
    if found is None:
        return Response("Not found", 404, media_type="text/plain")
    body, media_type, etag = found
    headers = {"ETag": etag, "Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=media_type, headers=headers)
