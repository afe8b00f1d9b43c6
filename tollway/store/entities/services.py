"""Services: an upstream (protocol, host, port, path), with Kong's `url` shorthand."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from tollway.store import tables
from tollway.store.entities.schema import EntitySchema, Errors, common_fields

TIMEOUT = {"type": "integer", "between": (1, 2147483646), "default": 60000, "required": True}
DEFAULT_PORTS = {"http": 80, "https": 443}


def parse_url(url: str) -> dict[str, str]:
    """A URL's parts as Kong reads a service's `url` (LuaSocket's parser): every whitespace
    character dropped, then scheme, authority, fragment, query and params taken off in that
    order, the rest being the path; no part is checked here. `example.com` is a path, and in
    `example.com:8080` the scheme is `example.com`."""
    rest = re.sub(r"\s", "", url)
    parts: dict[str, str] = {}
    for part, pattern in (("scheme", r"^([A-Za-z0-9][A-Za-z0-9+\-.]*):"), ("authority", r"^//([^/]*)"),
                          ("fragment", r"#(.*)$"), ("query", r"\?(.*)"), ("params", r";(.*)")):
        found = re.search(pattern, rest, re.DOTALL)
        if found is not None:
            parts[part] = found.group(1)
            rest = rest[:found.start()] + rest[found.end():]
    if rest:
        parts["path"] = rest
    authority = parts.get("authority")
    if authority is not None:
        authority = authority.partition("@")[2] if "@" in authority else authority
        port = re.search(r":([^:\]]*)$", authority)
        if port is not None:
            parts["port"] = port.group(1)
            authority = authority[:port.start()]
        if authority:
            bracketed = re.match(r"^\[(.+)\]$", authority)
            parts["host"] = bracketed.group(1) if bracketed else authority
    return parts


def split_url(data: dict[str, Any]) -> Errors:
    """Replace `url` by protocol, host, port and path, as Kong does: the protocol is the scheme
    (or, without one, https for port 443 and else http), the port 80 or 443 by protocol when the
    URL has none. What is wrong with a part is then reported against that field."""
    if "url" not in data:
        return {}
    url = data.pop("url")
    if url is None:
        return {}
    if not isinstance(url, str):
        return {"url": "expected a string"}
    parts = parse_url(url)
    port: int | str | None = parts.get("port")
    if isinstance(port, str) and port.isdigit():
        port = int(port)
    protocol = parts.get("scheme") or ("https" if port == 443 else "http")
    data["protocol"] = protocol
    data["host"] = parts.get("host")
    data["port"] = port if port is not None else DEFAULT_PORTS.get(protocol, 80)
    data["path"] = parts.get("path")
    return {}


_LABEL = r"[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*\.?$")
# What host_problem and split_url accept, for the OpenAPI document.
HOST_DOC = {"anyOf": [{"pattern": rf"^{_LABEL}(\.{_LABEL})*\.?$", "maxLength": 253},
                      {"format": "ipv4"}, {"format": "ipv6"}]}
URL_DOC = {"pattern": rf"^https?://{_LABEL}(\.{_LABEL})*(:[0-9]{{1,4}})?(/[!-~]*)?$"}


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def host_problem(service: dict[str, Any]) -> Errors:
    """Kong's host check: a host name or an IP address, without a port."""
    host = service.get("host")
    if not isinstance(host, str) or not host or _is_address(host) or _HOSTNAME.match(host):
        return {}
    name, colon, port = host.rpartition(":")
    if colon and port.isdigit() and (_HOSTNAME.match(name) or _is_address(name.strip("[]"))):
        return {"host": "must not have a port"}
    return {"host": f"invalid value: {host}"}


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
        "host": {"type": "string", "required": True, "documented": HOST_DOC},
        "port": {"type": "integer", "between": (0, 65535), "default": 80, "required": True},
        "path": {"type": "string", "starts_with": ("/",)},
        "connect_timeout": TIMEOUT,
        "write_timeout": TIMEOUT,
        "read_timeout": TIMEOUT,
        "enabled": {"type": "boolean", "default": True, "required": True},
        "tls_verify": {"type": "boolean"},
    },
    prepare=split_url,
    checks=(host_problem,),
    restrict=(("routes", "service_id"),),
)
