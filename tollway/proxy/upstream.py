"""Connections to upstreams: the keep-alive pool, and where its connections come from.

    UpstreamPool            idle keep-alive connections per PoolKey(scheme, host, port, verify)
    ├── Resolver            names resolved with c-ares, kept for their TTL (tollway.proxy.dns)
    └── UpstreamConnection  asyncio.Protocol + httptools response parser; hands the response to
                            the client side as it arrives (tollway.proxy.upstream_connection)

Connect errors are raised as `ConnectFailed(kind)` with kind "refused", "dns", "timeout" or "tls",
so the client side can answer as Kong does (503, 503, 504, 502).

DNS: a name is resolved when a connection is opened (never per request), within the service's
connect timeout, by `tollway.proxy.dns.Resolver`; a name that cannot be resolved is "dns" (503).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

from tollway.proxy.dns import ResolveFailed, Resolver
from tollway.proxy.upstream_connection import MAX_HEAD_SIZE, Keeper, UpstreamConnection, UpstreamListener
from tollway.proxy.upstream_target import PoolKey, Target

__all__ = ["MAX_HEAD_SIZE", "ConnectFailed", "PoolKey", "Target", "UpstreamConnection", "UpstreamListener",
           "UpstreamPool"]


class ConnectFailed(Exception):
    """Connecting to an upstream failed; `kind` is "refused", "dns", "timeout" or "tls"."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


Connector = Callable[[PoolKey, float], Awaitable[UpstreamConnection]]


class UpstreamPool(Keeper):
    """Keep-alive connections per PoolKey: at most `size` idle ones, each for `idle_timeout` s.

    Idle connections sit in a list, oldest first, with the time they went idle (Performance notes:
    pool lists); a stale one is dropped when taken, and a cleanup timer (running only while
    something is idle) closes the rest.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, size: int, idle_timeout: float,
                 resolver: Resolver | None = None, connect: Connector | None = None,
                 max_head: int = MAX_HEAD_SIZE) -> None:
        if size < 0 or idle_timeout < 0 or max_head < 1:
            raise ValueError(f"expected size >= 0, idle_timeout >= 0 and max_head >= 1, "
                             f"got {size}, {idle_timeout}, {max_head}")
        super().__init__(loop)
        self.size = size
        self.idle_timeout = idle_timeout
        self.max_head = max_head  # bytes a response head may take, given to each connection
        self.resolver = resolver or Resolver()
        self._connect = connect or self._open
        self._idle: dict[PoolKey, list[UpstreamConnection]] = {}
        self._last_key: PoolKey | None = None
        self._last_idle: list[UpstreamConnection] = []
        self._cleanup: asyncio.TimerHandle | None = None
        self._contexts: dict[bool, ssl.SSLContext] = {}

    def _idle_list(self, key: PoolKey) -> list[UpstreamConnection]:
        """The idle connections of `key`; the last key asked for is remembered by identity
        (Performance notes: pool lists)."""
        if key is self._last_key:
            return self._last_idle
        idle = self._idle.get(key)
        if idle is None:
            idle = self._idle[key] = []  # never removed: at most one list per service ever proxied to
        self._last_key = key
        self._last_idle = idle
        return idle

    def take(self, key: PoolKey) -> UpstreamConnection | None:
        """An idle connection for `key`, or None. Stale or closed ones are dropped on the way."""
        idle = self._idle_list(key)
        if not idle:
            return None
        oldest_allowed = self.clock() - self.idle_timeout
        while idle:
            conn = idle.pop()
            if conn.closed or conn.idle_since < oldest_allowed:
                conn.close()
                continue
            return conn
        return None

    async def connect(self, key: PoolKey, timeout: float) -> UpstreamConnection:
        """A new connection; raises ConnectFailed."""
        return await self._connect(key, timeout)

    def release(self, conn: UpstreamConnection) -> None:
        """Keep a connection whose exchange completed cleanly, if there is room."""
        if conn.closed:
            return
        idle = self._idle_list(conn.key)
        if len(idle) >= self.size:
            conn.close()
            return
        conn.idle_since = self.clock()
        conn.resume_reading()
        idle.append(conn)
        if self._cleanup is None:
            self._cleanup = self.loop.call_later(self.idle_timeout, self._sweep)

    def forget(self, conn: UpstreamConnection) -> None:
        idle = self._idle.get(conn.key)
        if idle:
            try:
                idle.remove(conn)
            except ValueError:
                pass

    def idle_count(self) -> int:
        return sum(len(idle) for idle in self._idle.values())

    def close(self) -> None:
        """Close every idle connection."""
        if self._cleanup is not None:
            self._cleanup.cancel()
            self._cleanup = None
        for idle in list(self._idle.values()):
            while idle:
                idle.pop().close()

    def _sweep(self) -> None:
        self._cleanup = None
        oldest_allowed = self.clock() - self.idle_timeout
        for idle in self._idle.values():
            while idle and idle[0].idle_since < oldest_allowed:
                idle.pop(0).close()
        if any(self._idle.values()):
            self._cleanup = self.loop.call_later(max(self.idle_timeout / 2, 0.5), self._sweep)

    def _ssl_context(self, verify: bool) -> ssl.SSLContext:
        context = self._contexts.get(verify)
        if context is None:
            context = ssl.create_default_context()
            if not verify:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            self._contexts[verify] = context
        return context

    async def _open(self, key: PoolKey, timeout: float) -> UpstreamConnection:
        deadline = self.loop.time() + timeout  # for the lookup and the connection together
        try:
            async with asyncio.timeout_at(deadline):
                address = await self.resolver.resolve(key.host)
        except TimeoutError as exc:
            raise ConnectFailed("dns", f"resolving {key.host} timed out") from exc
        except ResolveFailed as exc:
            raise ConnectFailed("dns", str(exc)) from exc
        tls: dict[str, Any] = {}
        if key.scheme == "https":
            tls = {"ssl": self._ssl_context(key.verify), "server_hostname": key.host}
        try:
            async with asyncio.timeout_at(deadline):
                _, conn = await self.loop.create_connection(
                    lambda: UpstreamConnection(self, key, self.max_head), address, key.port, **tls)
        except TimeoutError as exc:
            raise ConnectFailed("timeout", f"connecting to {key.host}:{key.port} timed out") from exc
        except ssl.SSLError as exc:
            raise ConnectFailed("tls", f"TLS handshake with {key.host}:{key.port} failed: {exc}") from exc
        except OSError as exc:
            raise ConnectFailed("refused", f"cannot connect to {key.host}:{key.port}: {exc}") from exc
        return conn
