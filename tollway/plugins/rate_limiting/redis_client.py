"""One connection to a Redis server for one event loop: what the redis policy asks of Redis, and no more.

Commands are pipelined: each is written as soon as it is sent, and Redis answers them in the order it
got them, so the replies go to their senders in that order (hiredis's reader parses them, in C).
The first command connects: TCP (or TLS), then AUTH and SELECT written ahead of the commands that
waited, without a round trip of their own. A failed AUTH breaks the connection before the reply of
any command behind it is read.

Every command has a deadline, `timeout` after it was sent, that covers connecting too. A command
with no reply by then breaks the connection: it and every command written behind it fail (their
replies could no longer be matched), and the next command connects again. So a hung Redis costs a
command at most `timeout`, and the event loop never waits.

    client = RedisClient(Address("127.0.0.1", 6379, ...), timeout=2.0)
    client.send(pack("GET", "k"), done)   # done(reply), or done(RedisUnavailable)

A reply is what hiredis gives: int, bytes, list, or a hiredis.ReplyError for an error reply (given
to `done`, not raised: the sender decides what it means).
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable
from ssl import CERT_NONE, SSLContext, create_default_context
from typing import Any, NamedTuple

import hiredis

Done = Callable[[Any], None]  # takes the reply, or a RedisUnavailable

log = logging.getLogger("tollway.rate-limiting")


def pack(*args: str | int | bytes) -> bytes:
    """A command as RESP (hiredis, in C)."""
    return hiredis.pack_command(args)  # type: ignore[arg-type]  # its stub types the tuple as one item


def bulk(value: bytes) -> bytes:
    """One argument of a command as RESP (a bulk string): to send pieces encoded once."""
    return b"$%d\r\n%s\r\n" % (len(value), value)


class RedisUnavailable(Exception):
    """Redis could not answer within the timeout (down, refused, slow, or an error)."""


class Address(NamedTuple):
    """Where a Redis server is and how to log in to it."""

    host: str
    port: int
    database: int
    username: str | None
    password: str | None
    ssl: bool
    ssl_verify: bool
    server_name: str | None

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"

    def handshake(self) -> list[bytes]:
        """The commands that start a connection: AUTH when there is a password (with the ACL user
        when one is named, else the default user's; a username without a password logs in as no
        one, as Kong does), then SELECT."""
        commands = []
        if self.password:
            login = (self.username, self.password) if self.username else (self.password,)
            commands.append(pack("AUTH", *login))
        if self.database:
            commands.append(pack("SELECT", self.database))
        return commands

    def tls(self) -> SSLContext | None:
        if not self.ssl:
            return None
        context = create_default_context()
        if not self.ssl_verify:
            context.check_hostname = False
            context.verify_mode = CERT_NONE
        return context


class _Command:
    """A command on its way: its bytes, who gets its reply, its deadline's timer, and the
    connection it was written on (None while it waits for one)."""

    __slots__ = ("packed", "done", "timer", "link")

    def __init__(self, packed: bytes, done: Done, timer: asyncio.TimerHandle | None) -> None:
        self.packed = packed
        self.done = done
        self.timer = timer
        self.link: _Link | None = None


def _tell(command: _Command, reply: Any) -> None:
    """Give a command its reply; a sender that raises is logged, and the others still get theirs."""
    if command.timer is not None:
        command.timer.cancel()
        command.timer = None
    try:
        command.done(reply)
    except Exception:
        log.exception("a Redis command's sender failed on its reply")


class _Link(asyncio.Protocol):
    """The connection: the commands written and waiting for their replies, in order."""

    def __init__(self, client: RedisClient) -> None:
        self.client = client
        self.reader = hiredis.Reader()
        self.waiting: collections.deque[_Command] = collections.deque()
        self.transport: asyncio.Transport | None = None
        self.broken: RedisUnavailable | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def write(self, command: _Command) -> None:
        command.link = self
        self.waiting.append(command)
        assert self.transport is not None
        self.transport.write(command.packed)

    def data_received(self, data: bytes) -> None:
        reader = self.reader
        reader.feed(data)
        waiting = self.waiting
        while True:
            try:
                reply = reader.gets()
            except hiredis.ProtocolError as exc:
                self.break_off(f"not a Redis reply ({exc})")
                return
            if reply is False:
                return
            if not waiting:
                self.break_off("a reply to no command")
                return
            _tell(waiting.popleft(), reply)
            if self.broken is not None:  # the handshake's reply broke it
                return

    def logged_in(self, reply: Any) -> None:
        """AUTH's or SELECT's reply: an error breaks the connection, and the commands behind it fail."""
        if isinstance(reply, hiredis.ReplyError):
            self.break_off(f"login failed: {reply}")

    def connection_lost(self, exc: Exception | None) -> None:
        self.break_off(f"the connection closed ({exc})" if exc else "the connection closed")

    def break_off(self, why: str) -> None:
        """Fail every command waiting here and close: the next command connects again."""
        if self.client.link is self:
            self.client.link = None
        if self.broken is None:
            self.broken = RedisUnavailable(f"{self.client.address}: {why}")
            if self.transport is not None:
                self.transport.abort()
        waiting, self.waiting = self.waiting, collections.deque()
        for command in waiting:
            _tell(command, self.broken)


class RedisClient:
    """Commands to one Redis from one event loop, over one pipelined connection (made on first use)."""

    def __init__(self, address: Address, timeout: float) -> None:
        self.address = address
        self.timeout = timeout
        self.link: _Link | None = None       # connected (and logged in, or logging in)
        self.queued: list[_Command] = []      # sent while connecting: written once connected
        self.connecting: asyncio.Task[None] | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self.tls = address.tls()  # made once: loading the system's authorities takes milliseconds

    def send(self, packed: bytes, done: Done, deadline: float | None = None) -> None:
        """Send one command (hiredis.pack_command's bytes); `done` gets its reply, or a
        RedisUnavailable when none came by `deadline` (the loop's time; default: now + timeout)."""
        loop = asyncio.get_running_loop()
        command = _Command(packed, done, None)
        if deadline is None:
            deadline = loop.time() + self.timeout
        command.timer = loop.call_at(deadline, self._expired, command)
        link = self.link
        if link is not None:
            link.write(command)
            return
        self.queued.append(command)
        if self.connecting is None:
            self.connecting = task = loop.create_task(self._connect())
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    def _expired(self, command: _Command) -> None:
        command.timer = None
        link = command.link
        if link is not None:  # its reply may still come, and would be taken for the next one's
            if command in link.waiting:
                link.break_off(f"no reply within {self.timeout:g} s")
            return
        if command in self.queued:
            self.queued.remove(command)
            _tell(command, RedisUnavailable(f"{self.address}: not connected within {self.timeout:g} s"))

    async def _connect(self) -> None:
        address = self.address
        loop = asyncio.get_running_loop()
        failure: RedisUnavailable | None = None
        link: _Link | None = None
        try:
            async with asyncio.timeout(self.timeout):
                _, link = await loop.create_connection(
                    lambda: _Link(self), address.host, address.port, ssl=self.tls,
                    server_hostname=(address.server_name or address.host) if address.ssl else None)
        except Exception as exc:  # refused, unreachable, too slow, a TLS failure, a name that is no name...
            failure = RedisUnavailable(f"{address}: cannot connect ({exc or type(exc).__name__})")
            failure.__cause__ = exc
        finally:
            self.connecting = None
        if link is not None and link.broken is not None:  # closed before this task resumed
            failure = link.broken
        if failure is not None or link is None:
            queued, self.queued = self.queued, []
            for command in queued:
                _tell(command, failure)
            return
        self.link = link
        for packed in address.handshake():
            link.write(_Command(packed, link.logged_in, None))
        queued, self.queued = self.queued, []
        for command in queued:
            link.write(command)
