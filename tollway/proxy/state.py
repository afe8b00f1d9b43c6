"""What the client connections of one worker's proxy share, below both the server and the protocol.

    State       one applied configuration: routes, plugin chains, the runtime handed to handlers
    Limits      what one request may hold, from the settings
    ProxyCore   the server as its connections see it: the configuration they read, the upstream
                pool, the client limits and trust settings, the counters they add to, the access
                log, and the registry of open connections with its timeout sweep

`ProxyServer` (server.py) is a ProxyCore that also applies configurations, serves sockets and
drains; the client side (protocol.py and its parts) knows only this module, so neither imports
the other.
"""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
from typing import Any, NamedTuple, Protocol

from tollway.config import Settings
from tollway.proxy.access_log import AccessLog
from tollway.proxy.call import UNLIMITED
from tollway.proxy.chain import RoutePlugins, Runtime, compile_plugins
from tollway.proxy.router import RouteTable
from tollway.proxy.upstream import UpstreamPool
from tollway.proxy.upstream_target import Target

__all__ = ["Limits", "ProxyCore", "ServedConnection", "State"]


class State:
    """One applied configuration: everything a request reads, replaced as a whole."""

    __slots__ = ("plugins", "routes", "runtime", "version")

    def __init__(self, version: int, routes: RouteTable, plugins: dict[str, RoutePlugins],
                 runtime: Runtime | None) -> None:
        self.version = version
        self.routes = routes
        self.plugins = plugins
        self.runtime = runtime

    @classmethod
    def compile(cls, snapshot: dict[str, Any], settings: Settings, spool: Any) -> State:
        """Build the route table, the plugin handlers and chains for `snapshot`."""
        routes = RouteTable.compile(snapshot.get("services") or (), snapshot.get("routes") or ())
        runtime = Runtime(settings, spool, snapshot)
        plugins = compile_plugins(snapshot, settings.enabled_plugins, runtime,
                                  [(r.route["id"], r.service["id"]) for r in routes.routes])
        targets: dict[str, Target] = {}
        for compiled in routes.routes:
            compiled.plugins = plugins.get(compiled.route["id"])
            service = compiled.service
            target = targets.get(service["id"])
            if target is None:
                target = targets[service["id"]] = Target(service)
            compiled.target = target
        return cls(int(snapshot.get("version") or 0), routes, plugins, runtime)


class Limits(NamedTuple):
    """What one request may hold, from the settings; 0 there means no limit."""

    head: int          # request line and headers, bytes
    headers: int       # header lines
    url: int           # request target, bytes
    body: int          # body, bytes

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(*(value or UNLIMITED for value in (
            settings.client_max_header_size, settings.client_max_headers, settings.client_max_url_length,
            settings.client_max_body_size)))


class ServedConnection(Protocol):
    """A client connection as the registry's sweep and a drain drive it."""

    def check_timeouts(self, now: float, header_timeout: float, keepalive_timeout: float) -> None: ...
    def shutdown(self) -> None: ...
    def abort(self) -> None: ...


class ProxyCore:
    """The part of a ProxyServer its client connections read and report to."""

    def __init__(self, settings: Settings, ssl_context: ssl.SSLContext | None) -> None:
        self.settings = settings
        self.ssl_context = ssl_context
        self.limits = Limits.from_settings(settings)
        self.max_connections = settings.worker_connections or UNLIMITED
        self.trusted_networks = tuple(ipaddress.ip_network(item) for item in settings.trusted_ips.split(",") if item)
        self.real_ip_name = settings.real_ip_header.lower().encode("latin-1")
        self.real_ip_recursive = settings.real_ip_recursive
        self.access_log = AccessLog.from_settings(settings)  # None when off (settings.access_log)
        self.state = State(0, RouteTable(), {}, None)
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self.pool: UpstreamPool = None  # type: ignore[assignment]
        self.connections: set[ServedConnection] = set()
        self.connections_accepted = 0
        self.connections_refused = 0    # over worker_connections
        self.requests_total = 0
        self.requests_rejected = 0      # refused before reaching an upstream (bad or too large)
        self.timeouts = 0               # connections closed by the header or keep-alive timeout
        self.draining = False
        self.all_closed: asyncio.Event | None = None  # set when the last connection closes (a drain waits on it)
        self.sweep_handle: asyncio.TimerHandle | None = None
        header, keepalive = settings.client_header_timeout, settings.client_keepalive_timeout
        self.sweep_every = min(1.0, max(0.05, min(t for t in (header, keepalive, 4.0) if t > 0) / 4))

    def trusts(self, client_ip: str) -> bool:
        """Whether a client's X-Forwarded-* headers are believed (settings.trusted_ips)."""
        try:
            address = ipaddress.ip_address(client_ip)
        except ValueError:
            return False
        if address.version == 6 and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.trusted_networks)

    def real_ip(self, peer: str, headers: list[tuple[bytes, bytes]]) -> str:
        """The client a trusted peer serves, from real_ip_header, as nginx's realip module reads it.

        X-Forwarded-For gives its last address, or with real_ip_recursive the last one that is
        not trusted itself; any other header is one address. Without the header, or with a value
        that is not an address, the peer is the client.
        """
        values = [value.decode("latin-1") for name, value in headers if name == self.real_ip_name]
        if not values:
            return peer
        if self.real_ip_name != b"x-forwarded-for":
            candidate = values[0].strip()
        else:
            hops = [hop.strip() for hop in ",".join(values).split(",") if hop.strip()]
            if not hops:
                return peer
            candidate = hops[-1]
            if self.real_ip_recursive:
                for hop in reversed(hops):
                    candidate = hop
                    if not self.trusts(hop):
                        break
        try:
            return str(ipaddress.ip_address(candidate))
        except ValueError:
            return peer

    def connection_opened(self, conn: ServedConnection) -> bool:
        """Count a new connection; False when it is over worker_connections (it is closed)."""
        if len(self.connections) >= self.max_connections:
            self.connections_refused += 1
            return False
        self.connections_accepted += 1
        self.connections.add(conn)
        if self.sweep_handle is None:
            self.sweep_handle = self.loop.call_later(self.sweep_every, self.sweep)
        if self.draining:
            conn.shutdown()
        return True

    def connection_closed(self, conn: ServedConnection) -> None:
        self.connections.discard(conn)
        if not self.connections and self.all_closed is not None:
            self.all_closed.set()

    def sweep(self) -> None:
        """Enforce the header and keep-alive timeouts; runs while there are connections."""
        self.sweep_handle = None
        now = self.loop.time()
        header = self.settings.client_header_timeout or float(UNLIMITED)
        keepalive = self.settings.client_keepalive_timeout or float(UNLIMITED)
        for conn in list(self.connections):
            conn.check_timeouts(now, header, keepalive)
        if self.connections:
            self.sweep_handle = self.loop.call_later(self.sweep_every, self.sweep)
