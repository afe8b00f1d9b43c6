"""Routes: how a request is matched (methods, hosts, headers, paths) and sent to a service."""

from __future__ import annotations

from typing import Any

from tollway.store import tables
from tollway.store.entities.schema import EntitySchema, Errors, Nesting, common_fields

STRINGS = {"type": "array", "elements": {"type": "string"}}


def at_least_one_matcher(route: dict[str, Any]) -> Errors:
    """Kong's check: an http(s) route needs something to match on."""
    https = "https" in (route.get("protocols") or ())
    names = ("methods", "hosts", "headers", "paths") + (("snis",) if https else ())
    if any(route.get(name) for name in names):
        return {}
    listed = ", ".join(f"'{name}'" for name in names)
    return {"@entity": [f"must set one of {listed} when 'protocols' is '{'https' if https else 'http'}'"]}


ROUTES = EntitySchema(
    name="routes",
    path="routes",
    table=tables.routes,
    endpoint_key="name",
    unique=("name",),
    nested=(Nesting("service", "routes"),),
    fields={
        **common_fields(),
        "name": {"type": "string", "name": True},
        "protocols": {"type": "set", "elements": {"type": "string", "one_of": ("http", "https")},
                      "default": ["http", "https"], "required": True, "len_min": 1},
        "methods": {"type": "set", "elements": {"type": "string"}},
        "hosts": STRINGS,
        "paths": {"type": "array", "elements": {
            "type": "string", "starts_with": ("/", "~"),
            "starts_with_message": "should start with: / (fixed path) or ~/ (regex path)"}},
        "headers": {"type": "map", "values": STRINGS},
        "snis": STRINGS,
        "https_redirect_status_code": {"type": "integer", "one_of": (426, 301, 302, 307, 308),
                                       "default": 426, "required": True},
        "regex_priority": {"type": "integer", "default": 0, "required": True},
        "strip_path": {"type": "boolean", "default": True, "required": True},
        "path_handling": {"type": "string", "one_of": ("v0", "v1"), "default": "v0", "required": True},
        "preserve_host": {"type": "boolean", "default": False, "required": True},
        "request_buffering": {"type": "boolean", "default": True, "required": True},
        "response_buffering": {"type": "boolean", "default": True, "required": True},
        "service": {"type": "foreign", "reference": "services"},
    },
    checks=(at_least_one_matcher,),
    documented_checks=({"anyOf": [
        *({"required": [name], "properties": {name: {"type": "array", "minItems": 1}}}
          for name in ("methods", "hosts", "paths")),
        {"required": ["headers"], "properties": {"headers": {"type": "object", "minProperties": 1}}},
        # snis count only on an https route: protocols not all http (absent: the default has https)
        {"required": ["snis"], "properties": {"snis": {"type": "array", "minItems": 1},
                                              "protocols": {"not": {"type": "array", "items": {"enum": ["http"]}}}}},
    ]},),
)
