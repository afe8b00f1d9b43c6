"""How to reach a service: `PoolKey`, what makes two upstream connections interchangeable, and
`Target`, a service's connection settings worked out once per configuration."""

from __future__ import annotations

from typing import Any, NamedTuple

__all__ = ["PoolKey", "Target"]


class PoolKey(NamedTuple):
    """What makes two upstream connections interchangeable."""

    scheme: str
    host: str
    port: int
    verify: bool


class Target:
    """How to reach one service, worked out once per configuration rather than per request."""

    __slots__ = ("connect_timeout", "host_header", "key", "read_timeout", "retries", "write_timeout")

    def __init__(self, service: dict[str, Any]) -> None:
        scheme = service.get("protocol") or "http"
        port = int(service.get("port") or 80)
        self.key = PoolKey(scheme, service["host"], port, service.get("tls_verify") is not False)
        host = self.key.host.encode()
        self.host_header = host if port == (443 if scheme == "https" else 80) else b"%s:%d" % (host, port)
        self.connect_timeout = (service.get("connect_timeout") or 60000) / 1000.0
        self.read_timeout = (service.get("read_timeout") or 60000) / 1000.0
        self.write_timeout = (service.get("write_timeout") or 60000) / 1000.0
        self.retries = int(service.get("retries") or 0)
