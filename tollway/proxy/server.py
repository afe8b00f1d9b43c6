"""`ProxyServer`: the proxy of one worker process.

    server = ProxyServer(settings, spool)
    server.apply(snapshot)        # compile routes, plugin chains, indexes; swap in one assignment
    await server.serve(sock)      # start serving a bound, listening socket; returns once serving
    await server.drain(timeout)   # stop accepting, finish in-flight requests, close the rest
    server.stats                  # {"connections_accepted", "connections_active", "requests_total", ...}

With `proxy_ssl_cert` and `proxy_ssl_cert_key` set, the socket is served over TLS (the context is
built once, in __init__, which raises ConfigError when the files cannot be loaded). The client
limits of the settings (`client_*`, `worker_connections`) are enforced by ClientProtocol; the
header and keep-alive timeouts by one sweep over the connections, running while there are any
(ProxyCore, in state.py, which is what the connections see of the server);
`upstream_max_header_size` by each UpstreamConnection, given it by the pool.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from typing import Any

from tollway.config import Settings
from tollway.errors import ConfigError
from tollway.proxy.call import UNLIMITED
from tollway.proxy.dns import Resolver
from tollway.proxy.protocol import ClientProtocol
from tollway.proxy.state import Limits, ProxyCore, State
from tollway.proxy.upstream import UpstreamPool

__all__ = ["Limits", "ProxyServer", "State", "server_ssl_context"]

log = logging.getLogger("tollway.proxy")


def server_ssl_context(cert: str, key: str) -> ssl.SSLContext:
    """The proxy's TLS context: the certificate chain and key of the settings, HTTP/1.1 by ALPN."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load proxy_ssl_cert {cert} with proxy_ssl_cert_key {key}: {exc}") from exc
    context.set_alpn_protocols(["http/1.1"])
    return context


class ProxyServer(ProxyCore):
    """Serves proxied requests on a listening socket with the configuration last applied."""

    def __init__(self, settings: Settings, spool: Any = None) -> None:
        context = None
        if settings.proxy_ssl_cert and settings.proxy_ssl_cert_key:
            context = server_ssl_context(settings.proxy_ssl_cert, settings.proxy_ssl_cert_key)
        super().__init__(settings, context)
        self.spool = spool
        self._servers: list[asyncio.Server] = []

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
            self.all_closed = asyncio.Event()
            try:
                await asyncio.wait_for(self.all_closed.wait(), timeout)
            except TimeoutError:
                log.warning("drain: %d connections still open after %.1fs; aborting them",
                            len(self.connections), timeout)
                for conn in list(self.connections):
                    conn.abort()
                await asyncio.sleep(0)
        if self.pool is not None:
            self.pool.close()
        if self.access_log is not None:
            self.access_log.close()
        if self.sweep_handle is not None:
            self.sweep_handle.cancel()
            self.sweep_handle = None

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
            "access_log_dropped": self.access_log.dropped if self.access_log is not None else 0,
        }

    def _setup(self) -> None:
        if self.loop is None:
            self.loop = asyncio.get_running_loop()
            nameservers = [server for server in self.settings.dns_resolver.split(",") if server]
            self.pool = UpstreamPool(self.loop, self.settings.upstream_keepalive_pool_size,
                                     self.settings.upstream_keepalive_idle_timeout,
                                     resolver=Resolver(nameservers),
                                     max_head=self.settings.upstream_max_header_size or UNLIMITED)
            if self.access_log is not None:
                self.access_log.start(self.loop)
