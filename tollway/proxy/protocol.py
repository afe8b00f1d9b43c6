"""The client side of the proxy: one `ClientProtocol` per client connection.

It is the connection's asyncio protocol, and hands the work to parts of one duty each (see
connection.py): the RequestReader parses requests into Calls, the Exchange takes each to its
upstream and back, the ResponseWriter writes the responses, the Tunnel relays a WebSocket.
Requests are served in order: while one is in flight, later pipelined ones wait (and reading
pauses). A request's cycle is: route → plugins' access phase → an upstream connection from the
pool (the request head and body are streamed to it) → the response streamed back, framed for
this client.

Every request on a matched route is metered exactly once, just before the last byte of its
response is written (or when the client goes away, or when the upstream fails after bytes were
sent, which closes the connection).

What stays here is the connection's own: its beginning and end, a refused request (answered in
Kong's error shape after the responses of the requests before it, then the connection closes;
metered only when it had been routed: a body that breaks or grows too large mid-stream), the
timeouts and a drain.

Timeouts (a head that takes too long, an idle keep-alive connection) are enforced by the server's
sweep (`check_timeouts`), so the request path arms no timer.
"""

from __future__ import annotations

import asyncio
from typing import Final

from tollway.plugins.base import Reply
from tollway.proxy import responses
from tollway.proxy.chain import run_log, run_meter
from tollway.proxy.connection import ClientConnection
from tollway.proxy.exchange import Exchange
from tollway.proxy.request_head import RequestReader
from tollway.proxy.response_writer import ResponseWriter
from tollway.proxy.responses import Rejected
from tollway.proxy.state import ProxyCore
from tollway.proxy.tunnel import Tunnel

__all__ = ["DRAIN_IDLE_GRACE", "ClientProtocol"]

DRAIN_IDLE_GRACE: Final = 0.5    # seconds an idle connection of a draining worker may still send a request


class ClientProtocol(asyncio.Protocol):
    """Serves one client connection: parses requests, proxies them, writes responses."""

    def __init__(self, server: ProxyCore) -> None:
        conn = self.conn = ClientConnection(server)
        self.tunnel = Tunnel(conn)
        self.writer = ResponseWriter(conn)
        self.exchange = Exchange(conn, self.writer, self.tunnel)
        self.reader = RequestReader(conn, self.exchange, self.tunnel, self.reject)
        self.refused = False            # over worker_connections: closed as soon as accepted
        # Timeouts (see check_timeouts): what the last sweep saw, and until when it may last
        self.watched: tuple[int, int] | None = None
        self.deadline = 0.0

    # asyncio.Protocol --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        conn = self.conn
        conn.made(transport)  # type: ignore[arg-type]
        if not conn.server.connection_opened(self):
            self.refused = conn.lost = True
            conn.transport.abort()  # over worker_connections

    def connection_lost(self, exc: Exception | None) -> None:
        if self.refused:
            return
        conn = self.conn
        conn.lost = True
        conn.server.connection_closed(self)
        call = conn.current
        conn.current = None
        conn.pipeline.clear()
        if call is not None and not call.response_done:
            call.response_done = True
            if not call.head_sent:
                call.status = 499  # nginx's code for a client that went away
            if call.upstream is not None:
                call.upstream.detach()
                call.upstream = None
            run_meter(call)
            run_log(call)
            if conn.access_log is not None:
                conn.log_access(call)

    def eof_received(self) -> bool | None:
        # A half-closed client still gets the response in flight, then the connection closes;
        # unless its request body is incomplete, which it can no longer be.
        if self.conn.current is not None and self.tunnel.call is None and self.reader.parsing is None:
            self.conn.closing = True
            return True
        return None

    def pause_writing(self) -> None:
        self.conn.write_paused = True
        call = self.conn.current
        if call is not None and call.upstream is not None:
            call.upstream.pause_reading()

    def resume_writing(self) -> None:
        self.conn.write_paused = False
        call = self.conn.current
        if call is not None and call.upstream is not None:
            call.upstream.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self.tunnel.call is not None:
            self.tunnel.from_client(data)
        elif not self.conn.rejecting:
            self.reader.feed(data)

    # A refused request -------------------------------------------------------------------------

    def reject(self, rejected: Rejected) -> None:
        """Refuse a request: answer in Kong's shape and close; nothing more is read or forwarded.

        When earlier requests of the connection are complete, they are answered first.
        """
        conn = self.conn
        reader = self.reader
        conn.server.requests_rejected += 1
        conn.rejecting = True
        reader.in_head = False
        broken = reader.parsing  # a request whose body broke, or grew over the limit
        reader.parsing = None
        current = conn.current
        if broken is not None and broken is not current:
            conn.pipeline.remove(broken)  # a pipelined request that never started
            broken = None
        if current is not None and broken is None:
            conn.deferred = rejected
            if not conn.read_paused:
                conn.read_paused = True
                conn.transport.pause_reading()
            reader.start_pending_call()
            return
        reader.start_pending = False
        if current is None:
            self.writer.write_rejection(rejected)
            return
        # The request in flight broke: whatever went to its upstream is abandoned.
        current.keep_alive = False
        upstream = current.upstream
        current.upstream = None
        if upstream is not None:
            upstream.detach()
        if current.response_done:
            conn.transport.close()
        elif current.head_sent:
            self.writer.cut_off(current)
        else:
            current.request_done = True
            self.exchange.reply(current, Reply(rejected.status, {"message": rejected.message}))

    # Timeouts (called by the server's sweep) ---------------------------------------------------

    def check_timeouts(self, now: float, header_timeout: float, keepalive_timeout: float) -> None:
        """Close the connection when a head, a pause in a request body, or an idle keep-alive
        period lasted too long (the header timeout for the first two, as nginx's client_body_timeout).

        A connection waiting on its upstream, in a tunnel, or whose reading the proxy paused is left
        to the upstream timeouts. The clock of a state starts at the first sweep that sees it, so a
        limit holds within a sweep interval.
        """
        conn = self.conn
        reader = self.reader
        if self.tunnel.call is not None or conn.lost or conn.rejecting or conn.read_paused:
            self.watched = None
            return
        body = reader.parsing
        if body is not None:
            state = (2, body.request_bytes)  # the clock restarts with every byte of the body
            limit = header_timeout
        elif conn.current is not None or conn.pipeline:
            self.watched = None
            return
        else:
            state = (int(reader.in_head), reader.completed)
            limit = header_timeout if reader.in_head or not reader.completed else keepalive_timeout
            if conn.closing and not reader.in_head:
                limit = min(limit, DRAIN_IDLE_GRACE)
        if state != self.watched:
            self.watched = state
            self.deadline = now + limit
            return
        if now < self.deadline:
            return
        if not conn.closing:
            conn.server.timeouts += 1
        if body is not None or reader.in_head:
            self.reject(Rejected(408, responses.MSG_REQUEST_TIMEOUT))
        else:
            conn.transport.close()

    # Draining -----------------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Close once the response in flight is complete; an idle connection after DRAIN_IDLE_GRACE.

        Closing an idle keep-alive connection at once races a request the client is sending on it,
        which would then fail with no response. During the grace a request that arrives is answered
        with `Connection: close`; the sweep closes the connection when the grace passes unused.
        """
        self.conn.closing = True
        self.watched = None  # the sweep restarts the idle clock with the drain's shorter limit

    def abort(self) -> None:
        self.conn.transport.abort()
