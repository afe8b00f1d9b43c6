"""`ProxyServer`: the proxy of one worker process.

    server = ProxyServer(settings, spool)
    server.apply(snapshot)        # compile routes, plugin chains, indexes; swap in one assignment
    await server.serve(sock)      # start serving a bound, listening socket; returns once serving
    await server.drain(timeout)   # stop accepting, finish in-flight requests, close the rest
    server.stats                  # {"connections_accepted", "connections_active", "requests_total", ...}

With `proxy_ssl_cert` and `proxy_ssl_cert_key` set, the socket is served over TLS (the context is
built once, in __init__, which raises ConfigError when the files cannot be loaded). The client
limits of the settings (`client_*`, `worker_connections`) are enforced by ClientProtocol; the
header and keep-alive timeouts by one sweep over the connections, running while there are any;
`upstream_max_header_size` by each UpstreamConnection, given it by the pool.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import ssl
from typing import Any, NamedTuple

from tollway.config import Settings
from tollway.errors import ConfigError
from tollway.proxy.call import UNLIMITED
from tollway.proxy.chain import RoutePlugins, Runtime, compile_plugins
from tollway.proxy.dns import Resolver
from tollway.proxy.protocol import ClientProtocol
from tollway.proxy.router import RouteTable
from tollway.proxy.upstream import Target, UpstreamPool

__all__ = ["Limits", "ProxyServer", "State", "server_ssl_context"]

log = logging.getLogger("tollway.proxy")


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


def server_ssl_context(cert: str, key: str) -> ssl.SSLContext:
    """The proxy's TLS context: the certificate chain and key of the settings, HTTP/1.1 by ALPN."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load proxy_ssl_cert {cert} with proxy_ssl_cert_key {key}: {exc}") from exc
    context.set_alpn_protocols(["http/1.1"])
    return context


class ProxyServer:
    """Serves proxied requests on a listening socket with the configuration last applied."""

    def __init__(self, settings: Settings, spool: Any = None) -> None:
        self.settings = settings
        self.spool = spool
        self.limits = Limits.from_settings(settings)
        self.max_connections = settings.worker_connections or UNLIMITED
        self.trusted_networks = tuple(ipaddress.ip_network(item) for item in settings.trusted_ips.split(",") if item)
        self.real_ip_name = settings.real_ip_header.lower().encode("latin-1")
        self.real_ip_recursive = settings.real_ip_recursive
        self.ssl_context: ssl.SSLContext | None = None
        if settings.proxy_ssl_cert and settings.proxy_ssl_cert_key:
            self.ssl_context = server_ssl_context(settings.proxy_ssl_cert, settings.proxy_ssl_cert_key)
        self.state = State(0, RouteTable(), {}, None)
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self.pool: UpstreamPool = None  # type: ignore[assignment]
        self.connections: set[ClientProtocol] = set()
        self.connections_accepted = 0
        self.connections_refused = 0    # over worker_connections
        self.requests_total = 0
        self.requests_rejected = 0      # refused before reaching an upstream (bad or too large)
        self.timeouts = 0               # connections closed by the header or keep-alive timeout
        self.draining = False
        self._servers: list[asyncio.Server] = []
        self._all_closed: asyncio.Event | None = None
        self._sweep_handle: asyncio.TimerHandle | None = None
        header, keepalive = settings.client_header_timeout, settings.client_keepalive_timeout
        self._sweep_every = min(1.0, max(0.05, min(t for t in (header, keepalive, 4.0) if t > 0) / 4))

    def apply(self, snapshot: dict[str, Any]) -> None:
        """Compile `snapshot` and make it the configuration of every request that starts from now."""
        state = State.compile(snapshot, self.settings, self.spool)
        self.state = state
        log.debug("configuration %d applied: %d routes", state.version, len(state.routes))

    async def serve(self, sock: socket.socket) -> None:
        """Start serving `sock` (bound and listening); returns once connections are accepted."""
        self._setup()
        sock.setblocking(False)
        tls: dict[str, Any] = {}
        if self.ssl_context is not None:
            tls = {"ssl": self.ssl_context, "ssl_handshake_timeout": self.settings.client_header_timeout or None}
        server = await self.loop.create_server(lambda: ClientProtocol(self), sock=sock, backlog=1024, **tls)
        self._servers.append(server)

    async def drain(self, timeout: float) -> None:
        """Stop accepting; let in-flight requests finish; close idle connections.

        Responses not yet started get `Connection: close`. Returns when no connection is left, or
        after `timeout` seconds, when the remaining ones are aborted.
        """
        self.draining = True
        for server in self._servers:
            server.close()
        for conn in list(self.connections):
            conn.shutdown()
        if self.connections:
            self._all_closed = asyncio.Event()
            try:
                await asyncio.wait_for(self._all_closed.wait(), timeout)
            except TimeoutError:
                log.warning("drain: %d connections still open after %.1fs; aborting them",
                            len(self.connections), timeout)
                for conn in list(self.connections):
                    conn.abort()
                await asyncio.sleep(0)
        if self.pool is not None:
            self.pool.close()
        if self._sweep_handle is not None:
            self._sweep_handle.cancel()
            self._sweep_handle = None

    @property
    def stats(self) -> dict[str, int]:
        """Counters of this worker's proxy."""
        return {
            "connections_accepted": self.connections_accepted,
            "connections_active": len(self.connections),
            "connections_refused": self.connections_refused,
            "requests_total": self.requests_total,
            "requests_rejected": self.requests_rejected,
            "timeouts": self.timeouts,
            "upstream_idle": self.pool.idle_count() if self.pool is not None else 0,
            "config_version": self.state.version,
        }

    # Called by ClientProtocol ------------------------------------------------------------------

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

    def connection_opened(self, conn: ClientProtocol) -> bool:
        """Count a new connection; False when it is over worker_connections (it is closed)."""
        if len(self.connections) >= self.max_connections:
            self.connections_refused += 1
            return False
        self.connections_accepted += 1
        self.connections.add(conn)
        if self._sweep_handle is None:
            self._sweep_handle = self.loop.call_later(self._sweep_every, self._sweep)
        if self.draining:
            conn.shutdown()
        return True

    def connection_closed(self, conn: ClientProtocol) -> None:
        self.connections.discard(conn)
        if not self.connections and self._all_closed is not None:
            self._all_closed.set()

    def _sweep(self) -> None:
        """Enforce the header and keep-alive timeouts; runs while there are connections."""
        self._sweep_handle = None
        now = self.loop.time()
        header = self.settings.client_header_timeout or float(UNLIMITED)
        keepalive = self.settings.client_keepalive_timeout or float(UNLIMITED)
        for conn in list(self.connections):
            conn.check_timeouts(now, header, keepalive)
        if self.connections:
            self._sweep_handle = self.loop.call_later(self._sweep_every, self._sweep)

    def _setup(self) -> None:
        if self.loop is None:
            self.loop = asyncio.get_running_loop()
            nameservers = [server for server in self.settings.dns_resolver.split(",") if server]
            self.pool = UpstreamPool(self.loop, self.settings.upstream_keepalive_pool_size,
                                     self.settings.upstream_keepalive_idle_timeout,
                                     resolver=Resolver(nameservers),
                                     max_head=self.settings.upstream_max_header_size or UNLIMITED)
