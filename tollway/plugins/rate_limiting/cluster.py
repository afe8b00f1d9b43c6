"""The `cluster` policy, the worker's side: ask the node's master, which counts in the database.

Workers have no database driver. A worker's calls go, over a Unix socket, to the master's
counting service (cluster_service.py), which decides them on rows of the database every node
shares, atomically, and answers each: admitted or not, with the counts after. The calls a worker
takes in one turn of its event loop go in one write; the master decides what it has received in
one transaction. A call waits for its answer without blocking the event loop, at most TIMEOUT.

The socket is in Linux's abstract namespace, named after the node's prefix (no file to clean up,
no path length limit). Messages are JSON lines:
  worker -> master  {"i": id, "c": [[scope, period, identity, window_end, limit], ...]}
  master -> worker  {"i": id, "a": admitted, "n": [count, ...]}  or  {"i": id, "e": "why"}
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
from typing import Any, ClassVar

import orjson

MAX_IDENTITY = 200     # characters of an identity stored as is; a longer one (a header's value) by its digest
TIMEOUT = 5.0          # seconds a call waits for the master's answer at most
MAX_LINE = 1 << 20     # the longest message line either side accepts


class ClusterUnavailable(Exception):
    """The master, or its database, could not decide a call in time."""


def address(prefix: str) -> str:
    """The abstract Unix socket of the counting service of the node whose prefix this is."""
    digest = hashlib.blake2b(str(prefix).encode(), digest_size=12).hexdigest()
    return f"\0tollway-rate-limiting-{digest}"


async def _connect(where: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A stream to the abstract socket (connected by hand: uvloop takes no abstract path)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, where)
    except BaseException:
        sock.close()
        raise
    return await asyncio.open_unix_connection(sock=sock, limit=MAX_LINE)


Counter = list[Any]    # [scope, period, identity, window_end, limit]


class _Client:
    """One event loop's connection to the master, and the calls waiting for its answers."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.writer: asyncio.StreamWriter | None = None
        self.connecting: asyncio.Future[None] | None = None
        self.waiting: dict[int, asyncio.Future[tuple[bool, list[int]]]] = {}
        self.outgoing: list[bytes] = []
        self.next_id = 0
        self.tasks: set[asyncio.Task[None]] = set()

    def add(self, counters: list[Counter]) -> asyncio.Future[tuple[bool, list[int]]]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[bool, list[int]]] = loop.create_future()
        self.next_id += 1
        self.waiting[self.next_id] = future
        if not self.outgoing:
            loop.call_soon(self._flush)  # once this turn's calls are in
        self.outgoing.append(orjson.dumps({"i": self.next_id, "c": counters}) + b"\n")
        return future

    def _flush(self) -> None:
        lines, self.outgoing = self.outgoing, []
        if self.writer is not None and not self.writer.is_closing():
            self.writer.write(b"".join(lines))
            return
        task = asyncio.get_running_loop().create_task(self._connect_and_send(lines))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _connect_and_send(self, lines: list[bytes]) -> None:
        try:
            if self.writer is None or self.writer.is_closing():
                if self.connecting is None:
                    self.connecting = asyncio.get_running_loop().create_future()
                    try:
                        reader, writer = await _connect(self.where)
                    except OSError as exc:
                        self.connecting.set_exception(exc)
                        self.connecting.exception()  # retrieved: the waiters below re-raise it
                        raise
                    finally:
                        connecting, self.connecting = self.connecting, None
                    self.writer = writer
                    connecting.set_result(None)
                    task = asyncio.get_running_loop().create_task(self._read(reader, writer))
                    self.tasks.add(task)
                    task.add_done_callback(self.tasks.discard)
                else:
                    await asyncio.shield(self.connecting)
            assert self.writer is not None
            self.writer.write(b"".join(lines))
        except OSError as exc:
            self._fail_all(f"the node's master is not reachable: {exc}")

    async def _read(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        why = "the node's master closed the connection"
        try:
            while line := await reader.readline():
                answer = orjson.loads(line)
                future = self.waiting.pop(answer["i"], None)
                if future is None or future.done():
                    continue
                if "e" in answer:
                    future.set_exception(ClusterUnavailable(answer["e"]))
                else:
                    future.set_result((bool(answer["a"]), answer["n"]))
        except (OSError, ValueError) as exc:
            why = f"the connection to the node's master failed: {exc}"
        finally:
            writer.close()
            if self.writer is writer:
                self.writer = None
            self._fail_all(why)

    def _fail_all(self, why: str) -> None:
        waiting, self.waiting = self.waiting, {}
        for future in waiting.values():
            if not future.done():
                future.set_exception(ClusterUnavailable(why))


class ClusterPolicy:
    """Take one call from every period's counter at once, in the database, through the master."""

    prefix: ClassVar[str] = ""                                  # the node's (set by the handler's init_worker)
    _clients: ClassVar[dict[tuple[str, int], _Client]] = {}     # (address, id(loop)) -> its client

    def __init__(self, scope: str, periods: tuple[str, ...]) -> None:
        self.scope = scope
        self.periods = periods

    def _client(self) -> _Client:
        where = address(self.prefix)
        place = (where, id(asyncio.get_running_loop()))
        client = self._clients.get(place)
        if client is None:
            client = self._clients[place] = _Client(where)
        return client

    async def take(self, identity: str, window_ends: list[int], limits: list[int]) -> tuple[bool, list[int]]:
        """(admitted, the counts after); ClusterUnavailable when no answer comes in time."""
        if len(identity) > MAX_IDENTITY:  # a row key stays small, whatever a client sends
            identity = "blake2b:" + hashlib.blake2b(identity.encode("utf-8", "surrogatepass")).hexdigest()
        counters = [[self.scope, period, identity, end, limit]
                    for period, end, limit in zip(self.periods, window_ends, limits, strict=True)]
        client = self._client()
        future = client.add(counters)
        try:
            async with asyncio.timeout(TIMEOUT):
                return await asyncio.shield(future)
        except TimeoutError:
            raise ClusterUnavailable(f"no answer from the node's master within {TIMEOUT:g} s") from None
