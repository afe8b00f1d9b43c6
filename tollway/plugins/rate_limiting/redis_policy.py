"""The `redis` policy: counters in Redis, shared by every node, exact, one round trip per call.

A Lua script takes one unit from every period's counter of a call: it increments them all and,
when one went over its limit, takes the units back and refuses the call; a new key is set to expire
a second after its window ends. Redis runs a script atomically, so no other node's call sees a
count between the increment and the taking back, and a refused call changes nothing.

The calls a worker takes in one turn of its event loop go to Redis together, in one script call
that decides each in turn (Redis's atomicity covers the whole batch, so each decision is what it
would be alone): under load a round trip serves many calls. The script is called by its SHA1
(EVALSHA); when Redis does not know it (restarted, or SCRIPT FLUSH), that batch is sent again with
the script itself (EVAL), which Redis then keeps.

The client (redis_client.py) is one pipelined connection per event loop: a call waits without
blocking the loop, and no longer than `redis.timeout` (connecting included); a failure gives
RedisUnavailable, which the handler answers as `fault_tolerant` says.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
from collections.abc import Callable
from typing import Any, ClassVar, Final

import hiredis

from tollway.plugins.rate_limiting.redis_client import Address, RedisClient, RedisUnavailable, bulk

__all__ = ["RedisPolicy", "RedisUnavailable"]

log = logging.getLogger("tollway.rate-limiting")

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

MAX_BATCH = 256          # calls in one script call at most
KEY_CACHE_SIZE = 65_536  # identities whose keys a policy keeps encoded
SHA: Final = hashlib.sha1(TAKE.encode()).hexdigest().encode()
EVALSHA: Final = b"$7\r\nEVALSHA\r\n" + bulk(SHA)
EVAL: Final = b"$4\r\nEVAL\r\n" + bulk(TAKE.encode())

Taken = Callable[[Any], None]  # gets (admitted, counts after), or a RedisUnavailable
Pending = tuple[bytes, bytes, int, Taken]  # a call's KEYS and ARGV (RESP), its number of counters, and who is told


def address_of(conf: dict[str, Any]) -> Address:
    """The plugin's `redis` record as an Address."""
    return Address(conf["host"], int(conf.get("port") or 6379), int(conf.get("database") or 0),
                   conf.get("username"), conf.get("password"), bool(conf.get("ssl")), bool(conf.get("ssl_verify")),
                   conf.get("server_name"))


class _Batcher:
    """One loop's client of one Redis, and the calls waiting for the next script call."""

    def __init__(self, client: RedisClient, loop: asyncio.AbstractEventLoop) -> None:
        self.client = client
        self.loop = loop  # held: while this batcher is known by id(loop), no other loop gets that id
        self.pending: list[Pending] = []

    def add(self, call: Pending) -> None:
        pending = self.pending
        if not pending:
            self.loop.call_soon(self._flush)  # once the calls of this turn of the loop are in
        pending.append(call)
        if len(pending) >= MAX_BATCH:
            self._flush()

    def _flush(self) -> None:
        batch, self.pending = self.pending, []
        if not batch:
            return
        keys = 0
        for call in batch:
            keys += call[2]
        # KEYS: the calls' keys, in order; ARGV: their n, limits and window ends, in the same order
        body = b"".join([bulk(b"%d" % keys), *[call[0] for call in batch], *[call[1] for call in batch]])
        items = 3 + keys + keys * 2 + len(batch)
        deadline = self.loop.time() + self.client.timeout
        self.client.send(b"*%d\r\n%s%s" % (items, EVALSHA, body),
                         functools.partial(self._answered, batch, items, body, deadline, len(batch) + keys), deadline)

    def _answered(self, batch: list[Pending], items: int, body: bytes | None, deadline: float, expected: int,
                  answer: Any) -> None:
        """The script's answer to `batch`: for each call its decision and counts (`expected` items)."""
        if isinstance(answer, hiredis.ReplyError):
            # Redis forgot the script: sent again with its text, if there is time left for it
            if body is not None and str(answer).startswith("NOSCRIPT") and self.loop.time() < deadline:
                self.client.send(b"*%d\r\n%s%s" % (items, EVAL, body),
                                 functools.partial(self._answered, batch, items, None, deadline, expected), deadline)
                return
            answer = RedisUnavailable(f"{self.client.address}: {answer}")
        elif not isinstance(answer, Exception) and not (isinstance(answer, list) and len(answer) == expected):
            answer = RedisUnavailable(f"{self.client.address}: the script answered {answer!r:.80}")
        at = 0
        for call in batch:
            n = call[2]
            try:
                call[3](answer if isinstance(answer, Exception) else (answer[at] == 1, answer[at + 1:at + 1 + n]))
            except Exception:
                log.exception("rate-limiting: a call's answer from Redis failed")
            at += 1 + n


class RedisPolicy:
    """One plugin's counters in Redis: a key per period and identity, named after the plugin (its
    scope), the period and the window's end; one unit taken from each at once.

    What a call sends is mostly the same from call to call: its ARGV (the limits and the windows'
    ends) changes when a window does, an identity's keys too. Both are kept encoded (RESP) until
    then. A connection belongs to an event loop: one is made per loop on first use, and shared by
    every plugin of the worker configured for the same Redis and timeout."""

    # (address, timeout, id(loop)) -> its batcher: shared by the plugins of a worker, and kept
    # across configuration changes (a new handler finds its connection)
    _batchers: ClassVar[dict[tuple[Address, float, int], _Batcher]] = {}

    def __init__(self, address: Address, timeout: float, scope: str, periods: tuple[str, ...],
                 limits: list[int]) -> None:
        self.address = address
        self.timeout = timeout
        self.prefixes = [f"tollway:rate-limiting:{scope}:{period}:" for period in periods]
        self.limits = limits
        self.count = len(periods)
        self.ends: list[int] = []        # the windows the encoded pieces are for
        self.argv = b""                  # n, the limits, the windows' ends
        self.keys: dict[str, bytes] = {}  # identity -> its keys in these windows
        self.loop: asyncio.AbstractEventLoop | None = None  # the loop of the last call, and its batcher
        self.batcher: _Batcher | None = None

    @classmethod
    def of(cls, conf: dict[str, Any], scope: str, periods: tuple[str, ...], limits: list[int]) -> RedisPolicy:
        timeout_ms = int(conf["timeout"]) if conf.get("timeout") is not None else 2000
        return cls(address_of(conf), timeout_ms / 1000, scope, periods, limits)

    def take(self, identity: str, window_ends: list[int], done: Taken) -> None:
        """Take one unit from each period's counter of `identity`; `done` gets (admitted, the counts
        after), or a RedisUnavailable when Redis does not answer in time. The event loop calls it, later."""
        if window_ends != self.ends:
            self.ends = window_ends
            self.argv = b"".join([bulk(b"%d" % value) for value in [self.count, *self.limits, *window_ends]])
            self.keys.clear()
        keys = self.keys.get(identity)
        if keys is None:
            if len(self.keys) >= KEY_CACHE_SIZE:
                self.keys.clear()
            keys = self.keys[identity] = b"".join([bulk(f"{prefix}{end}:{identity}".encode())
                                                   for prefix, end in zip(self.prefixes, window_ends, strict=True)])
        loop = asyncio.get_running_loop()
        batcher = self.batcher
        if loop is not self.loop or batcher is None:
            place = (self.address, self.timeout, id(loop))
            batcher = RedisPolicy._batchers.get(place)
            if batcher is None:
                _forget_closed_loops()
                batcher = RedisPolicy._batchers[place] = _Batcher(RedisClient(self.address, self.timeout), loop)
            self.loop, self.batcher = loop, batcher
        batcher.add((keys, self.argv, self.count, done))


def _forget_closed_loops() -> None:
    """Drop the batchers of loops that are closed (a worker has one loop; tests make many)."""
    for place, batcher in list(RedisPolicy._batchers.items()):
        if batcher.loop.is_closed():
            del RedisPolicy._batchers[place]
