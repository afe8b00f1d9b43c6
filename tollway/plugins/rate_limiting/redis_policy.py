"""The `redis` policy: counters in Redis, shared by every node, exact, one round trip per call.

A Lua script takes one unit from every period's counter of a call: it increments them all and,
when one went over its limit, takes the units back and refuses the call; a new key is set to expire
a second after its window ends. Redis runs a script atomically, so no other node's call sees a
count between the increment and the taking back, and a refused call changes nothing.

The calls a worker takes in one turn of its event loop go to Redis together, in one script call
that decides each in turn (Redis's atomicity covers the whole batch, so each decision is what it
would be alone): under load a round trip, and redis-py's work, serve many calls. The script is
sent once, then called by its SHA (EVALSHA; redis-py's Script sends it again after a restart).

The client is redis-py's asyncio client, without retries: a call waits without blocking the event
loop, and no longer than `redis.timeout` (connect and answer); a failure raises RedisUnavailable,
which the handler answers as `fault_tolerant` says.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any, NamedTuple

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

# KEYS: every call's counters, one per period, call after call.
# ARGV: for each call, its number of counters n, then n limits, then n window ends (epoch seconds).
# Returns, for each call, 1 when admitted else 0, then its n counts after.
# Optimistic, and still exact because Redis runs the script atomically: increment every counter
# (INCR makes a missing key and answers its new count, so no GET is needed), and when one went over
# its limit, take the units back (DECR) and refuse. A key INCR made (count 1) gets its expiry then,
# refused or not. One INCR per counter for an admitted call, against a GET and an INCR before.
TAKE = """
local out = {}
local k = 0
local a = 1
while a <= #ARGV do
  local n = tonumber(ARGV[a])
  local room = 1
  local counts = {}
  for i = 1, n do
    local count = redis.call('INCR', KEYS[k + i])
    if count == 1 then redis.call('EXPIREAT', KEYS[k + i], ARGV[a + n + i] + 1) end
    if count > tonumber(ARGV[a + i]) then room = 0 end
    counts[i] = count
  end
  if room == 0 then
    for i = 1, n do counts[i] = redis.call('DECR', KEYS[k + i]) end
  end
  out[#out + 1] = room
  for i = 1, n do out[#out + 1] = counts[i] end
  k = k + n
  a = a + 1 + 2 * n
end
return out
"""

MAX_BATCH = 256  # calls in one script call at most


class RedisUnavailable(Exception):
    """Redis could not answer within the timeout (down, refused, slow, or an error)."""


class Connection(NamedTuple):
    """What a Redis client is for: plugins configured alike share one client per worker."""

    host: str
    port: int
    database: int
    username: str | None
    password: str | None
    ssl: bool
    ssl_verify: bool
    server_name: str | None
    timeout_ms: int

    @classmethod
    def of(cls, conf: dict[str, Any]) -> Connection:
        return cls(conf["host"], int(conf.get("port") or 6379), int(conf.get("database") or 0), conf.get("username"),
                   conf.get("password"), bool(conf.get("ssl")), bool(conf.get("ssl_verify")), conf.get("server_name"),
                   int(conf.get("timeout") or 0) if conf.get("timeout") is not None else 2000)


Pending = tuple[list[str], list[int], list[int], "asyncio.Future[tuple[bool, list[int]]]"]


class _Batcher:
    """One loop's client of one Redis, and the calls waiting for the next script call."""

    def __init__(self, connection: Connection, timeout: float) -> None:
        self.connection = connection
        self.timeout = timeout
        extra: dict[str, Any] = {}
        if connection.ssl:
            extra = {"ssl": True, "ssl_check_hostname": connection.ssl_verify,
                     "ssl_cert_reqs": ssl.CERT_REQUIRED if connection.ssl_verify else ssl.CERT_NONE}
        self.client = aioredis.Redis(
            host=connection.host, port=connection.port, db=connection.database, username=connection.username,
            password=connection.password, socket_timeout=timeout, socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0), max_connections=512, **extra)
        self.script = self.client.register_script(TAKE)
        self.pending: list[Pending] = []
        self.tasks: set[asyncio.Task[None]] = set()

    def add(self, keys: list[str], window_ends: list[int], limits: list[int]) -> asyncio.Future[tuple[bool, list[int]]]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[bool, list[int]]] = loop.create_future()
        if not self.pending:
            loop.call_soon(self._flush)  # once the calls of this turn of the loop are in
        self.pending.append((keys, window_ends, limits, future))
        if len(self.pending) >= MAX_BATCH:
            self._flush()
        return future

    def _flush(self) -> None:
        batch, self.pending = self.pending, []
        if batch:
            task = asyncio.get_running_loop().create_task(self._send(batch))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _send(self, batch: list[Pending]) -> None:
        keys: list[str] = []
        args: list[int] = []
        for call_keys, ends, limits, _ in batch:
            keys += call_keys
            args.append(len(call_keys))
            args += limits
            args += ends
        try:
            async with asyncio.timeout(self.timeout):
                answer = await self.script(keys=keys, args=args)
        except (RedisError, OSError, TimeoutError) as exc:
            where = f"{self.connection.host}:{self.connection.port}"
            failure = RedisUnavailable(f"{where}: {exc or type(exc).__name__}")
            failure.__cause__ = exc
            for *_, future in batch:
                if not future.done():
                    future.set_exception(failure)
            return
        at = 0
        for call_keys, _, _, future in batch:
            n = len(call_keys)
            if not future.done():  # a call whose client left is cancelled
                future.set_result((bool(answer[at]), [int(count) for count in answer[at + 1:at + 1 + n]]))
            at += 1 + n


class RedisPolicy:
    """Take one call from every period's counter at once, in Redis.

    A client (and its connection pool) belongs to an event loop: one is made per loop on first use,
    and shared by every plugin of the worker configured for the same Redis."""

    _batchers: dict[tuple[Connection, int], _Batcher] = {}  # (connection, id(loop)) -> its batcher

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.timeout = connection.timeout_ms / 1000

    @classmethod
    def of(cls, conf: dict[str, Any]) -> RedisPolicy:
        return cls(Connection.of(conf))

    def _batcher(self) -> _Batcher:
        place = (self.connection, id(asyncio.get_running_loop()))
        batcher = self._batchers.get(place)
        if batcher is None:
            batcher = self._batchers[place] = _Batcher(self.connection, self.timeout)
        return batcher

    async def take(self, keys: list[str], window_ends: list[int], limits: list[int]) -> tuple[bool, list[int]]:
        """(admitted, the counts after); RedisUnavailable when Redis does not answer in time."""
        try:
            future = self._batcher().add(keys, window_ends, limits)
        except (RedisError, OSError) as exc:
            raise RedisUnavailable(f"{self.connection.host}:{self.connection.port}: {exc}") from exc
        return await future
