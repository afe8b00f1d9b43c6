"""One client connection's transport and the state its parts share.

`ClientProtocol` (protocol.py) is the asyncio protocol of a client connection. It hands the work
to parts of one duty each, which all hold the connection's `ClientConnection`:

    RequestReader   request_head.py     llhttp's callbacks, the checks of each head, the Calls
    Exchange        exchange.py         the request in flight: route, access, upstream, retries
    ResponseWriter  response_writer.py  responses framed for this client, and the gateway's own
    Tunnel          tunnel.py           a WebSocket's bytes, both ways

Here: the transport and who is at its other end, the requests in the order they are answered
(`current`, then those waiting in `pipeline`), flow control of reading, and closing.

Flow control is symmetric: when the upstream's write buffer fills, the client's reading pauses,
and when the client's write buffer fills, the upstream's reading pauses (ClientProtocol), so a
body of any size passes through in bounded memory.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Final

from tollway.proxy import responses
from tollway.proxy.call import Call
from tollway.proxy.headers import forwarded_blocks
from tollway.proxy.responses import Rejected
from tollway.proxy.state import ProxyCore

__all__ = ["HIGH_WATER", "LINGER", "ClientConnection", "KnownHost", "without_port"]

HIGH_WATER: Final = 64 * 1024    # request body bytes queued while no upstream can take them
LINGER: Final = 2.0              # seconds a refused client's bytes are still read and dropped

# What a Host header may hold (RFC 3986 reg-name or IP literal, and a port): no '/', '\\', '@',
# '?', '#' or space, which would make it a path, a user or a query wherever the host is reused.
_HOST_BYTES: Final = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:[]%"


def without_port(host: bytes) -> bytes:
    """A Host header's host: `name:port` and `[v6]:port` lose the port, `[v6]` stays whole."""
    colon = host.rfind(b":")
    return host[:colon] if colon >= 0 and not host.endswith(b"]") else host


class KnownHost:
    """The last Host header found valid on a connection, without its port, and as the lower-cased
    name routing compares: a client sends the same Host on every request, so it is checked once.

    A request's `call.host` is the kept object itself when it is the same Host, which the
    request cycle then recognises by identity.
    """

    __slots__ = ("bare", "host", "name")

    def __init__(self) -> None:
        self.host = b""
        self.bare = b""
        self.name = ""

    def check(self, host: bytes) -> bytes:
        """`host` (not empty), as the kept object when equal; raises Rejected when it is not a host[:port]."""
        if host == self.host:
            return self.host
        if host.translate(None, _HOST_BYTES) or host.find(b"..") >= 0:  # find, not in (Performance notes)
            raise Rejected(400, responses.MSG_BAD_REQUEST)  # as nginx: a Host that is not a host[:port]
        self.host = host
        self.bare = without_port(host)
        self.name = self.bare.decode("latin-1").lower()
        return host

    def name_of(self, host: bytes) -> str:
        """The lower-cased host name of a request's `call.host`, for routing."""
        if host is self.host:
            return self.name
        return without_port(host).decode("latin-1").lower()

    def bare_of(self, host: bytes) -> bytes:
        """A request's `call.host` without its port."""
        return self.bare if host is self.host else without_port(host)


class ClientConnection:
    """What the parts of one client connection share."""

    def __init__(self, server: ProxyCore) -> None:
        # Per-connection state
        self.server = server
        self.loop = server.loop
        self.clock: Callable[[], float] = server.loop.time  # Performance notes: bound once
        self.access_log = server.access_log  # None when off: one check where a call ends
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.tls = server.ssl_context is not None
        self.proto_b = b"https" if self.tls else b"http"
        self.client_ip = ""
        self.client_ip_b = b""
        self.local_port_b = b""
        self.trusted = False            # its X-Forwarded-* headers are passed on (settings.trusted_ips)
        self.own_forwarded: tuple[bytes, bytes, bytes] | None = None  # forwarded_blocks() of an untrusted client
        self.host = KnownHost()
        self.read_paused = False
        self.write_paused = False
        self.closing = False            # close once the current response is complete
        self.lost = False
        self.rejecting = False          # a request was refused: nothing more is read

        # The requests, in the order they are answered
        self.current: Call | None = None  # the request being answered
        self.pipeline: deque[Call] = deque()
        self.deferred: Rejected | None = None  # a refusal answered once the requests before it are done

    def made(self, transport: asyncio.Transport) -> None:
        """The connection is accepted: note who is at the other end."""
        self.transport = transport
        peer = transport.get_extra_info("peername")
        sock = transport.get_extra_info("sockname")
        self.client_ip = str(peer[0]) if peer else "127.0.0.1"
        self.client_ip_b = self.client_ip.encode()
        self.local_port_b = str(sock[1]).encode() if sock else b"80"
        self.trusted = bool(self.server.trusted_networks) and self.server.trusts(self.client_ip)
        if not self.trusted:
            self.own_forwarded = forwarded_blocks(self.client_ip_b, self.proto_b, self.local_port_b)

    def local_host(self) -> str:
        """The name of this end for a request without a Host (HTTP/1.0): the address it reached."""
        sock = self.transport.get_extra_info("sockname")
        local = str(sock[0]) if sock else "localhost"
        return f"[{local}]" if ":" in local else local

    def keeps_alive(self, call: Call) -> bool:
        """Whether the response to `call` may leave the connection open."""
        return call.keep_alive and not self.closing and not self.server.draining

    def update_reading(self) -> None:
        """Pause reading while requests wait, or while the one in flight has more body queued than
        HIGH_WATER or an upstream that cannot take more; resume otherwise."""
        call = self.current
        pause = bool(self.pipeline) or (
            call is not None and (call.queued_bytes > HIGH_WATER
                                  or (call.upstream is not None and call.upstream.write_paused)))
        if pause != self.read_paused and not self.lost and not self.rejecting:
            self.read_paused = pause
            if pause:
                self.transport.pause_reading()
            else:
                self.transport.resume_reading()

    def log_access(self, call: Call) -> None:
        """`call` is over: its access log line (when there is an access log; callers check)."""
        access_log = self.access_log
        if access_log is not None:
            access_log.record(call, self.clock())

    def close(self) -> None:
        """Close; after a refusal, linger (as nginx's lingering_close) so the answer gets through.

        A client may still be sending what was refused: closing a socket with unread bytes resets
        the connection, which can destroy the answer before the client reads it. So the write side
        is shut, what arrives is read and dropped (`rejecting`), and the socket goes after LINGER.
        """
        transport = self.transport
        if not self.rejecting or self.tls or self.lost or not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()
        if self.read_paused:
            self.read_paused = False
            transport.resume_reading()
        self.loop.call_later(LINGER, transport.abort)
