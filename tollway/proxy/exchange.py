"""The request in flight on one client connection, from its route to the end of its response.

    start(call)     route → https check → the plugins' access phase → 100 Continue → attempt;
                    a plugin's access may await (a network round trip): the cycle goes on in a
                    task when it is done, and other connections are served meanwhile
    attempt(call)   an idle pooled upstream connection, or a new one opened in a task
    _send           the request head (headers rewritten at the boundary) and the body so far
    upstream_*      what the upstream connection reports (its `exchange`): the response goes to
                    the ResponseWriter, a WebSocket's bytes to the Tunnel, failures to a retry
                    or to the gateway's own answer
    response_complete / cycle_done   then the next request of the connection, if one waits

An upstream that fails is retried (up to the service's `retries`) when the request can be sent
again: a connection that could not be made, or a kept-alive one the upstream closed before
answering when its body was kept whole (REPLAY_LIMIT) or idempotent. Otherwise the client gets
Kong's answer (502, 503 or 504), or, when part of the response is already out, a close.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable
from typing import Final

from tollway.plugins.base import Reply
from tollway.proxy import responses
from tollway.proxy.call import Call
from tollway.proxy.chain import Chain, RoutePlugins, checked_reply, run_access, run_log, run_meter
from tollway.proxy.connection import ClientConnection
from tollway.proxy.headers import (
    NOT_FORWARDED,
    RequestLines,
    forwarded_prefix_line,
    forwarded_values,
    upstream_request_head,
)
from tollway.proxy.response_writer import ResponseWriter
from tollway.proxy.tunnel import Tunnel
from tollway.proxy.upstream import ConnectFailed
from tollway.proxy.upstream_connection import UpstreamConnection, UpstreamListener
from tollway.proxy.upstream_target import Target

__all__ = ["IDEMPOTENT", "REPLAY_LIMIT", "Exchange"]

log = logging.getLogger("tollway.proxy")

REPLAY_LIMIT: Final = 64 * 1024  # request bodies up to this size are kept for a retry
IDEMPOTENT: Final = frozenset(["GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"])

_NO_HEADERS: Final[dict[bytes, bytes]] = {}  # what routing sees when no route matches on headers (never written)

_FAILURES: Final = {
    "refused": (503, responses.MSG_UNAVAILABLE),
    "dns": (503, responses.MSG_NO_NAME),
    "timeout": (504, responses.MSG_TIMEOUT),
    "tls": (502, responses.MSG_BAD_GATEWAY),
    "invalid": (502, responses.MSG_BAD_GATEWAY),
    "closed": (502, responses.MSG_BAD_GATEWAY),
}


class Exchange(UpstreamListener):
    """Takes each request of one client connection to its upstream and its response back."""

    def __init__(self, conn: ClientConnection, writer: ResponseWriter, tunnel: Tunnel) -> None:
        self.conn = conn
        self.writer = writer
        self.tunnel = tunnel
        self.request_lines = RequestLines()  # the last request's header lines as sent on
        self.access_task: asyncio.Task[None] | None = None  # an access phase a plugin awaits in (kept referenced)

    # Starting a request ------------------------------------------------------------------------

    def start(self, call: Call) -> None:
        """Route `call`, run the access phase, and send it to its upstream (or answer it here)."""
        conn = self.conn
        state = conn.server.state
        hostname = conn.host.name_of(call.host)
        headers = dict(call.headers) if state.routes.uses_headers else _NO_HEADERS
        match = state.routes.match(call.method, hostname, call.path, headers)
        if match is None:
            self.gateway_error(call, 404, responses.MSG_NO_ROUTE)
            return
        compiled = match.compiled
        call.match = match
        call.route = compiled.route
        call.service = compiled.service
        plugins: RoutePlugins | None = compiled.plugins
        if plugins is None:
            self.gateway_error(call, 404, responses.MSG_NO_ROUTE)
            return
        chain = plugins.base
        call.chain = chain
        if not compiled.http_allowed and not conn.tls:
            forwarded = forwarded_values(call.headers) if conn.trusted else NOT_FORWARDED
            if forwarded[0].lower() != b"https":
                target = f"{call.path}?{call.query}" if call.query or call.bare_query else call.path
                if forwarded[1]:
                    hostname = forwarded[1].decode("latin-1")
                self.reply(call, responses.https_required(compiled.https_redirect, hostname or conn.local_host(),
                                                          target))
                return
        if chain.access:
            try:
                outcome = run_access(call, plugins)
            except Exception:
                log.exception("plugin access phase failed")
                outcome = Reply(500, {"message": responses.MSG_UNEXPECTED})
            if outcome is not None:
                if isinstance(outcome, Reply):
                    self.reply(call, outcome)
                elif isinstance(outcome, asyncio.Future):  # the last access phase's answer, to come
                    outcome.add_done_callback(functools.partial(self._access_done, call))
                else:  # a plugin awaits something: the rest of the cycle runs when it is done
                    self.access_task = self.conn.loop.create_task(self._access_later(call, outcome))
                return
        if call.expect_continue and not call.request_done:
            self.writer.write_continue(call)
        self.attempt(call)

    async def _access_later(self, call: Call, outcome: Awaitable[Reply | None]) -> None:
        """The access phase's end, when a plugin awaited something in it."""
        try:
            reply = await outcome
        except Exception:
            log.exception("plugin access phase failed")
            reply = Reply(500, {"message": responses.MSG_UNEXPECTED})
        self.access_task = None
        self._access_end(call, reply)

    def _access_done(self, call: Call, outcome: asyncio.Future[Reply | None]) -> None:
        """The access phase's end, when its last plugin answered with a future (no task needed)."""
        reply: Reply | None
        try:
            reply = checked_reply(outcome.result())
        except (Exception, asyncio.CancelledError):  # the plugin's failure, or its future cancelled
            log.exception("plugin access phase failed")
            reply = Reply(500, {"message": responses.MSG_UNEXPECTED})
        self._access_end(call, reply)

    def _access_end(self, call: Call, reply: Reply | None) -> None:
        conn = self.conn
        if conn.lost or call is not conn.current or call.response_done:
            return  # the client went away meanwhile (the call was metered then), or the request broke
        if reply is not None:
            self.reply(call, reply)
            return
        if call.expect_continue and not call.request_done:
            self.writer.write_continue(call)
        self.attempt(call)

    def attempt(self, call: Call) -> None:
        """Send the request on an idle pooled connection, or open one in a task."""
        target: Target = call.match.compiled.target  # type: ignore[union-attr]
        upstream = self.conn.server.pool.take(target.key)
        if upstream is not None:
            self._send(call, upstream)
        else:
            self.conn.loop.create_task(self._connect(call, target))

    async def _connect(self, call: Call, target: Target) -> None:
        key = target.key
        pool = self.conn.server.pool
        try:
            upstream = await pool.connect(key, target.connect_timeout)
        except ConnectFailed as exc:
            log.info("%s", exc)
            self.upstream_error(call, exc.kind, nothing_sent=True)
            return
        except Exception:
            log.exception("connecting to %s:%d failed", key.host, key.port)
            self.upstream_error(call, "refused", nothing_sent=True)
            return
        if self.conn.lost or call is not self.conn.current:
            pool.release(upstream)
            return
        self._send(call, upstream)

    def _send(self, call: Call, upstream: UpstreamConnection) -> None:
        """Write the request head (and whatever body arrived) to `upstream`."""
        conn = self.conn
        match = call.match
        assert match is not None
        compiled = match.compiled
        service: Target = compiled.target
        call.upstream = upstream
        upstream.begin(self, call.method == "HEAD", service.read_timeout, service.write_timeout)
        if conn.write_paused:
            upstream.pause_reading()
        host = call.host if compiled.preserve_host and call.host else service.host_header
        method_bytes = call.method_bytes
        target = match.target
        changes = call.changes
        if changes is not None:  # set_method(), set_path()
            if changes.method is not None:
                method_bytes = changes.method.encode("ascii")
            if changes.path is not None:
                target = changes.path
        if call.query:
            target = b"%s?%s" % (target, call.query.encode("latin-1"))
        elif call.bare_query:
            target += b"?"  # as Kong: `/p?` reaches the upstream as sent
        if call.chunked:
            framing = b"transfer-encoding: chunked\r\n"
        elif call.has_body or call.method in ("POST", "PUT", "PATCH") or (
                changes is not None and changes.method in ("POST", "PUT", "PATCH")):  # sent with a length of 0
            framing = b"content-length: %d\r\n" % call.content_length
        else:
            framing = b""
        lines = self.request_lines.of(call.headers, call.hop_tokens)
        prefix_line = match.prefix_line
        if conn.trusted:
            proto, forwarded_host, port, path, prefix = forwarded_values(call.headers)
            if prefix:
                prefix_line = forwarded_prefix_line(prefix)
        else:
            proto, forwarded_host, port, path, _ = NOT_FORWARDED
        if not forwarded_host:
            forwarded_host = conn.host.bare_of(call.host)
        head = upstream_request_head(
            method_bytes, target, host, lines,
            client_ip=conn.client_ip_b,
            real_ip=call.forwarded_ip.encode("latin-1") if conn.trusted else conn.client_ip_b,
            forwarded_proto=proto or conn.proto_b, forwarded_host=forwarded_host,
            forwarded_port=port or conn.local_port_b,
            forwarded_path=path or call.path.encode("latin-1"), prefix_line=prefix_line,
            framing=framing, upgrade=call.upgrade, blocks=conn.own_forwarded)
        call.sent_at = conn.clock()
        upstream.write(head)
        if call.upgrade is not None:
            return  # bytes after the head belong to the tunnel, sent once the upstream agrees
        if call.replay and call.replay_ok:
            for chunk in call.replay:  # a retry: what the failed attempt already sent
                self._frame_body(call, upstream, chunk)
        queued = call.body_queue
        if queued:
            call.body_queue = []
            call.queued_bytes = 0
            for chunk in queued:
                self.forward_body(call, chunk)
            conn.update_reading()
        if call.request_done:
            self.end_body(call)

    # The request body --------------------------------------------------------------------------

    def forward_body(self, call: Call, chunk: bytes) -> None:
        """A chunk of the request body, to the upstream the call was sent to."""
        upstream = call.upstream
        assert upstream is not None
        call.body_forwarded += len(chunk)
        if call.replay_ok:
            if call.body_forwarded > REPLAY_LIMIT:
                call.replay_ok = False
                call.replay = []
            else:
                call.replay.append(chunk)
        self._frame_body(call, upstream, chunk)

    @staticmethod
    def _frame_body(call: Call, upstream: UpstreamConnection, chunk: bytes) -> None:
        if call.chunked:
            upstream.writelines([b"%x\r\n" % len(chunk), chunk, b"\r\n"])
        else:
            upstream.write(chunk)

    def end_body(self, call: Call) -> None:
        """The request is complete: end its body, and the upstream's read timeout starts."""
        upstream = call.upstream
        if upstream is None:
            return
        if call.chunked and not call.discard_body:
            upstream.write(b"0\r\n\r\n")
        upstream.request_sent()

    # What the upstream connection reports ------------------------------------------------------

    def upstream_head(self, upstream: UpstreamConnection, status: int, raw: list[tuple[bytes, bytes]]) -> None:
        call = self.conn.current
        if call is None or call.upstream is not upstream:
            return
        call.first_byte_at = self.conn.clock()
        upgrade = status == 101 and call.upgrade is not None
        if status == 101 and not upgrade:
            upstream.detach()
            self.upstream_error(call, "invalid", nothing_sent=False)
            return
        self.writer.head(call, upstream, status, raw, upgrade)
        if upgrade:
            self.tunnel.open(call, upstream)

    def upstream_body(self, upstream: UpstreamConnection, chunk: bytes) -> None:
        call = self.conn.current
        if call is None or call.upstream is not upstream:
            return
        self.writer.body(call, chunk)

    def upstream_fed(self, upstream: UpstreamConnection) -> None:
        """The upstream's latest read is parsed."""
        self.writer.flush_head()

    def upstream_done(self, upstream: UpstreamConnection, keep_alive: bool) -> None:
        call = self.conn.current
        if call is None or call.upstream is not upstream:
            return
        call.upstream = None
        if upstream.tunnel:
            run_meter(call)
            self.conn.transport.close()
            return
        self.writer.finish(call)
        self.response_complete(call)

    def upstream_failed(self, upstream: UpstreamConnection, kind: str) -> None:
        call = self.conn.current
        if call is None or call.upstream is not upstream:
            return
        # A kept-alive connection the upstream closed before answering: the request can be
        # sent again (when its body allows it).
        self.upstream_error(call, kind, nothing_sent=False, stale=kind == "closed" and not upstream.got_bytes)

    def upstream_tunnel(self, upstream: UpstreamConnection, data: bytes) -> None:
        self.tunnel.from_upstream(data)

    def upstream_write_paused(self, paused: bool) -> None:
        self.conn.update_reading()

    # Errors, replies, completion ---------------------------------------------------------------

    def upstream_error(self, call: Call, kind: str, nothing_sent: bool, stale: bool = False) -> None:
        """The upstream failed: retry when allowed, else answer as Kong, or close if too late."""
        conn = self.conn
        if conn.lost or call is not conn.current or call.response_done:
            return
        upstream = call.upstream
        call.upstream = None
        if upstream is not None:
            upstream.detach()
        self.writer.drop_unsent_head(call)
        retries = call.match.compiled.target.retries if call.match is not None else 0
        if not call.head_sent and call.upgrade is None and call.tries < retries:
            # Connection failures are retried; a request whose body went out only when idempotent.
            sent_as = call.changes.method if call.changes is not None else None
            replayable = call.replay_ok and (call.body_forwarded == 0 or (sent_as or call.method) in IDEMPOTENT)
            if (nothing_sent and kind in ("refused", "timeout")) or (stale and replayable):
                call.tries += 1
                self.attempt(call)
                return
        if call.head_sent:
            self.writer.cut_off(call)
            return
        status, message = _FAILURES.get(kind, (502, responses.MSG_BAD_GATEWAY))
        self.gateway_error(call, status, message)

    def gateway_error(self, call: Call, status: int, message: str) -> None:
        self.reply(call, Reply(status, {"message": message}))

    def reply(self, call: Call, reply: Reply) -> None:
        """Answer `call` with a response of the gateway's (or a plugin's) own."""
        self.writer.reply(call, reply)
        self.response_complete(call)

    def response_complete(self, call: Call) -> None:
        call.response_done = True
        if self.conn.access_log is not None:
            self.conn.log_access(call)
        chain: Chain | None = call.chain
        if chain is not None and chain.log:
            self.conn.loop.call_soon(run_log, call)
        if call.request_done or not call.keep_alive:
            self.cycle_done(call)
        else:
            call.discard_body = True  # the rest of the body arrives before the next request

    def cycle_done(self, call: Call) -> None:
        """`call` is answered and its request read: start the next one, or close."""
        conn = self.conn
        if call is not conn.current:
            return
        conn.current = None
        if not call.keep_alive or conn.closing:
            conn.close()
            return
        if conn.pipeline:
            following = conn.pipeline.popleft()
            conn.current = following
            conn.update_reading()
            self.start(following)
            return
        if conn.deferred is not None:
            self.writer.write_rejection(conn.deferred)
            return
        conn.update_reading()
