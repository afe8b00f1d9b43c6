"""Services: an upstream (protocol, host, port, path), with Kong's `url` shorthand."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from tollway.store import tables
from tollway.store.entities.schema import EntitySchema, Errors, common_fields

TIMEOUT = {"type": "integer", "between": (1, 2147483646), "default": 60000, "required": True}
DEFAULT_PORTS = {"http": 80, "https": 443}


def split_url(data: dict[str, Any]) -> Errors:
    """Replace `url` by protocol, host, port (80/443 by default) and path, as Kong does."""
    if "url" not in data:
        return {}
    url = data.pop("url")
    if url is None:
        return {}
    if not isinstance(url, str):
        return {"url": "expected a string"}
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        return {"url": "invalid port number"}
    if not parts.scheme:
        return {"url": "missing scheme in url"}
    if not parts.hostname:
        return {"url": "missing host in url"}
    data["protocol"] = parts.scheme.lower()
    data["host"] = parts.hostname
    data["port"] = port if port is not None else DEFAULT_PORTS.get(parts.scheme.lower(), 80)
    data["path"] = parts.path or None
    return {}


SERVICES = EntitySchema(
    name="services",
    path="services",
    table=tables.services,
    endpoint_key="name",
    unique=("name",),
    fields={
        **common_fields(),
        "name": {"type": "string", "name": True},
        "retries": {"type": "integer", "between": (0, 32767), "default": 5, "required": True},
        "protocol": {"type": "string", "one_of": ("http", "https"), "default": "http", "required": True},
        "host": {"type": "string", "required": True},
        "port": {"type": "integer", "between": (0, 65535), "default": 80, "required": True},
        "path": {"type": "string", "starts_with": ("/",)},
        "connect_timeout": TIMEOUT,
        "write_timeout": TIMEOUT,
        "read_timeout": TIMEOUT,
        "enabled": {"type": "boolean", "default": True, "required": True},
        "tls_verify": {"type": "boolean"},
    },
    prepare=split_url,
    restrict=(("routes", "service_id"),),
)
