"""`ProxyServer`: the proxy of one worker process.

    server = ProxyServer(settings, spool)
    server.apply(snapshot)        # compile routes, plugin chains, indexes; swap in one assignment
    await server.serve(sock)      # start serving a bound, listening socket; returns once serving
    await server.drain(timeout)   # stop accepting, finish in-flight requests, close the rest
    server.stats                  # {"connections_accepted", "connections_active", "requests_total", ...}
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

from tollway.config import Settings
from tollway.proxy.chain import RoutePlugins, Runtime, compile_plugins
from tollway.proxy.protocol import ClientProtocol
from tollway.proxy.router import RouteTable
from tollway.proxy.upstream import UpstreamPool

__all__ = ["ProxyServer", "State"]

log = logging.getLogger("tollway.proxy")


class State:
    """One applied configuration: everything a request reads, replaced as a whole."""

    __slots__ = ("plugins", "routes", "routes_use_headers", "runtime", "version")

    def __init__(self, version: int, routes: RouteTable, plugins: dict[str, RoutePlugins],
                 runtime: Runtime | None) -> None:
        self.version = version
        self.routes = routes
        self.plugins = plugins
        self.runtime = runtime
        self.routes_use_headers = any(r.headers for r in routes.routes)

    @classmethod
    def compile(cls, snapshot: dict[str, Any], settings: Settings, spool: Any) -> State:
        """Build the route table, the plugin handlers and chains for `snapshot`."""
        routes = RouteTable.compile(snapshot.get("services") or (), snapshot.get("routes") or ())
        runtime = Runtime(settings, spool, snapshot)
        plugins = compile_plugins(snapshot, settings.enabled_plugins, runtime,
                                  [(r.route["id"], r.service["id"]) for r in routes.routes])
        return cls(int(snapshot.get("version") or 0), routes, plugins, runtime)


class ProxyServer:
    """Serves proxied requests on a listening socket with the configuration last applied."""

    def __init__(self, settings: Settings, spool: Any = None) -> None:
        self.settings = settings
        self.spool = spool
        self.state = State(0, RouteTable(), {}, None)
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self.pool: UpstreamPool = None  # type: ignore[assignment]
        self.connections: set[ClientProtocol] = set()
        self.connections_accepted = 0
        self.requests_total = 0
        self.draining = False
        self._servers: list[asyncio.Server] = []
        self._all_closed: asyncio.Event | None = None

    def apply(self, snapshot: dict[str, Any]) -> None:
        """Compile `snapshot` and make it the configuration of every request that starts from now."""
        state = State.compile(snapshot, self.settings, self.spool)
        self.state = state
        log.debug("configuration %d applied: %d routes", state.version, len(state.routes))

    async def serve(self, sock: socket.socket) -> None:
        """Start serving `sock` (bound and listening); returns once connections are accepted."""
        self._setup()
        sock.setblocking(False)
        server = await self.loop.create_server(lambda: ClientProtocol(self), sock=sock, backlog=1024)
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

    @property
    def stats(self) -> dict[str, int]:
        """Counters of this worker's proxy."""
        return {
            "connections_accepted": self.connections_accepted,
            "connections_active": len(self.connections),
            "requests_total": self.requests_total,
            "upstream_idle": self.pool.idle_count() if self.pool is not None else 0,
            "config_version": self.state.version,
        }

    # Called by ClientProtocol ------------------------------------------------------------------

    def connection_opened(self, conn: ClientProtocol) -> None:
        self.connections_accepted += 1
        self.connections.add(conn)
        if self.draining:
            conn.shutdown()

    def connection_closed(self, conn: ClientProtocol) -> None:
        self.connections.discard(conn)
        if not self.connections and self._all_closed is not None:
            self._all_closed.set()

    def _setup(self) -> None:
        if self.loop is None:
            self.loop = asyncio.get_running_loop()
            self.pool = UpstreamPool(self.loop, self.settings.upstream_keepalive_pool_size,
                                     self.settings.upstream_keepalive_idle_timeout)
