"""Request bodies as Kong reads them: JSON, url-encoded forms and multipart, forms typed per schema.

Form keys nest and index like Kong's: `paths[]=/a`, `paths[1]=/a`, `config.key_names[]=apikey`,
`service.id=...`; a repeated key is an array. Form strings are then typed by the
fields they land in (tollway.store.entities.validation.infer_types).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.datastructures import UploadFile
from starlette.requests import Request

from tollway.admin.errors import ApiError

_TOKEN = re.compile(r"([^.\[\]]+)|\[(\d*)\]")
_APPEND = -1


class _Indexed(dict[int, Any]):
    """An array being built from `name[N]` and `name[]` keys; becomes a list once complete."""


async def read_body(request: Request) -> tuple[dict[str, Any], bool]:
    """The body as a dict, and whether it came from a form (so that `infer_types` applies)."""
    raw = await request.body()
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media == "multipart/form-data":
        form = await request.form()
        pairs = [(k, await v.read() if isinstance(v, UploadFile) else v) for k, v in form.multi_items()]
        return decode_form([(k, v.decode() if isinstance(v, bytes) else v) for k, v in pairs]), True
    if not raw.strip():
        return {}, False
    if media == "application/json" or media.endswith("+json"):
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            data = None
        if not isinstance(data, dict):
            raise ApiError(400, {"message": "Cannot parse JSON body"})
        return data, False
    if media == "application/x-www-form-urlencoded":
        try:
            text = raw.decode()
        except UnicodeDecodeError:
            raise ApiError(400, {"message": "Cannot parse form body"}) from None
        return decode_form(parse_qsl(text, keep_blank_values=True)), True
    raise ApiError(415, {"message": "Unsupported media type"})  # Kong's wording for 415


def decode_form(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Nest form pairs by their keys' dots and brackets."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        tokens: list[str | int] = [
            name if name else (int(index) if index else _APPEND) for name, index in _TOKEN.findall(key)
        ]
        if tokens:
            _put(root, tokens, value)
    return _finish(root)


def _put(node: Any, tokens: list[str | int], value: str) -> None:
    for position, token in enumerate(tokens):
        last = position == len(tokens) - 1
        nxt = None if last else tokens[position + 1]
        indexed = isinstance(node, _Indexed)
        if indexed and token == _APPEND:
            token = max(node, default=0) + 1
        if last:
            if indexed or token not in node:
                node[token] = value
            elif isinstance(node[token], list):
                node[token].append(value)
            else:
                node[token] = [node[token], value]  # a repeated key is an array
            return
        child = node.get(token)
        wants_index = isinstance(nxt, int)
        if not isinstance(child, dict) or isinstance(child, _Indexed) != wants_index:
            child = _Indexed() if wants_index else {}
            node[token] = child
        node = child


def _finish(node: Any) -> Any:
    if isinstance(node, _Indexed):
        return [_finish(node[i]) for i in sorted(node)]
    if isinstance(node, dict):
        return {k: _finish(v) for k, v in node.items()}
    return node
