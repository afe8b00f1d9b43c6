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
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from tollway.admin.errors import ApiError

_TOKEN = re.compile(r"([^.\[\]]+)|\[(\d*)\]")
_APPEND = -1


class _Indexed(dict[int, Any]):
    """An array being built from `name[N]` and `name[]` keys; becomes a list once complete."""


MAX_ARGUMENTS = 1000  # form pairs in one body, as Kong's Admin API (more: 400 "Too many arguments")
MAX_DEPTH = 16        # dots and brackets in one form key


async def read_body(request: Request) -> tuple[dict[str, Any], bool]:
    """The body as a dict, and whether it came from a form (so that `infer_types` applies).

    Form text must be UTF-8 (percent-encoded or not): anything else is refused, never stored
    garbled."""
    raw = await request.body()
    content_type = request.headers.get("content-type", "")
    media = content_type.split(";")[0].strip().lower()
    if media == "multipart/form-data":
        return decode_form(_multipart_pairs(raw, content_type)), True
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
            pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, errors="strict",
                              max_num_fields=MAX_ARGUMENTS)
        except UnicodeDecodeError:
            raise ApiError(400, {"message": "Cannot parse form body: expected UTF-8 text"}) from None
        except ValueError:  # max_num_fields
            raise ApiError(400, {"message": "Too many arguments"}) from None
        return decode_form(pairs), True
    raise ApiError(415, {"message": "Unsupported media type"})  # Kong's wording for 415


def _multipart_pairs(raw: bytes, content_type: str) -> list[tuple[str, str]]:
    """The fields of a multipart/form-data body, each decoded as UTF-8 (a file's content too)."""
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise ApiError(400, {"message": "Cannot parse multipart body: no boundary"})
    pairs: list[tuple[bytes, bytearray]] = []
    header: list[bytes] = [b"", b""]  # the header field and value being read
    names: list[bytes] = []           # the current part's name

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header[0] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header[1] += data[start:end]

    def on_header_end() -> None:
        if header[0].lower() == b"content-disposition":
            _, options = parse_options_header(header[1])
            names.append(options.get(b"name", b""))
        header[0] = header[1] = b""

    def on_part_begin() -> None:
        names.clear()

    def on_headers_finished() -> None:
        pairs.append((names[-1] if names else b"", bytearray()))
        if len(pairs) > MAX_ARGUMENTS:
            raise ApiError(400, {"message": "Too many arguments"})

    def on_part_data(data: bytes, start: int, end: int) -> None:
        pairs[-1][1].extend(data[start:end])

    parser = MultipartParser(boundary, {
        "on_header_field": on_header_field, "on_header_value": on_header_value, "on_header_end": on_header_end,
        "on_part_begin": on_part_begin, "on_headers_finished": on_headers_finished, "on_part_data": on_part_data})
    try:
        parser.write(raw)
        parser.finalize()
        return [(name.decode("utf-8"), bytes(value).decode("utf-8")) for name, value in pairs]
    except UnicodeDecodeError:
        raise ApiError(400, {"message": "Cannot parse multipart body: expected UTF-8 text"}) from None
    except MultipartParseError:
        raise ApiError(400, {"message": "Cannot parse multipart body"}) from None


def decode_form(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Nest form pairs by their keys' dots and brackets."""
    root: dict[str, Any] = {}
    if len(pairs) > MAX_ARGUMENTS:
        raise ApiError(400, {"message": "Too many arguments"})
    for key, value in pairs:
        tokens: list[str | int] = [
            name if name else (int(index) if index else _APPEND) for name, index in _TOKEN.findall(key)
        ]
        if len(tokens) > MAX_DEPTH:
            raise ApiError(400, {"message": f"Cannot parse form body: a key nested more than {MAX_DEPTH} deep"})
        if tokens and not isinstance(tokens[0], str):  # `[]=x`, `[0]=x`: an index of nothing
            raise ApiError(400, {"message": f"Cannot parse form body: the key '{key}' does not start with a name"})
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
