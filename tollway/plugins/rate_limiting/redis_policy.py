"""The `redis` policy: counters in Redis, shared by every node, exact, one round trip per call.

One Lua script reads every period's counter of a call and, only when each has room, increments
them all (Redis runs a script atomically: no read-then-write race between nodes), setting each
key to expire once its window has ended. A refused call changes nothing. The script is sent once
and then called by its SHA (EVALSHA, redis-py's Script falls back to EVAL after a restart).

The client is redis-py's asyncio client, without retries: a call waits without blocking the event
loop, and no longer than `redis.timeout` (connect and answer); a failure raises RedisUnavailable,
which the handler answers as `fault_tolerant` says. The counters' keys expire a second after their
window ends, so Redis holds only the current windows.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any, NamedTuple

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

# KEYS: one counter per period. ARGV: the limits, then the windows' ends (epoch seconds).
# Returns {1 when admitted else 0, the counts after...}.
TAKE = """
local n = #KEYS
local counts = {}
for i = 1, n do
  local count = tonumber(redis.call('GET', KEYS[i]) or '0')
  counts[i] = count
end
for i = 1, n do
  if counts[i] + 1 > tonumber(ARGV[i]) then
    table.insert(counts, 1, 0)
    return counts
  end
end
for i = 1, n do
  counts[i] = redis.call('INCR', KEYS[i])
  if counts[i] == 1 then
    redis.call('EXPIREAT', KEYS[i], tonumber(ARGV[n + i]) + 1)
  end
end
table.insert(counts, 1, 1)
return counts
"""


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


class RedisPolicy:
    """Take one call from every period's counter at once, in Redis.

    A client (and its connection pool) belongs to an event loop: one is made per loop on first use,
    and shared by every plugin of the worker configured for the same Redis."""

    _clients: dict[tuple[Connection, int], tuple[Any, Any]] = {}  # (connection, id(loop)) -> (client, script)

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.timeout = connection.timeout_ms / 1000

    @classmethod
    def of(cls, conf: dict[str, Any]) -> RedisPolicy:
        return cls(Connection.of(conf))

    def _client(self) -> tuple[Any, Any]:
        loop = asyncio.get_running_loop()
        found = self._clients.get((self.connection, id(loop)))
        if found is None:
            connection = self.connection
            extra: dict[str, Any] = {}
            if connection.ssl:
                extra = {"ssl": True, "ssl_check_hostname": connection.ssl_verify,
                         "ssl_cert_reqs": ssl.CERT_REQUIRED if connection.ssl_verify else ssl.CERT_NONE}
            client = aioredis.Redis(
                host=connection.host, port=connection.port, db=connection.database, username=connection.username,
                password=connection.password, socket_timeout=self.timeout, socket_connect_timeout=self.timeout,
                retry=Retry(NoBackoff(), 0), max_connections=512, **extra)
            found = self._clients[(connection, id(loop))] = (client, client.register_script(TAKE))
        return found

    async def take(self, keys: list[str], window_ends: list[int], limits: list[int]) -> tuple[bool, list[int]]:
        """(admitted, the counts after); RedisUnavailable when Redis does not answer in time."""
        try:
            _, script = self._client()
            async with asyncio.timeout(self.timeout):
                answer = await script(keys=keys, args=[*limits, *window_ends])
        except (RedisError, OSError, TimeoutError) as exc:
            where = f"{self.connection.host}:{self.connection.port}"
            raise RedisUnavailable(f"{where}: {exc or type(exc).__name__}") from exc
        return bool(answer[0]), [int(count) for count in answer[1:]]
