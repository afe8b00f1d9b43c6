"""rate-limiting: count each call against its windows and refuse it, as Kong does, when one is full.

For each call: who it counts for (`limit_by`, with Kong's fallbacks to the client's IP), the end of
each configured period's window (windows.py, in `tz`), then one atomic take on every period's
counter by the policy: `local` (local.py, the node's shared counters), `cluster` (cluster.py, the
database) or `redis` (redis_policy.py, one script for the calls of a turn of the event loop; the call
waits on a future, no task of its own). Admitted, the call goes on with Kong's X-RateLimit-* and
RateLimit-* headers; refused, it is answered `error_code` with {"message": error_message} and
Retry-After, and consumes nothing. billable (priority 5) meters every call in its meter phase, which
runs for a call this plugin refused too: usage shows the refusals with their status.

When the counters cannot be reached (Redis down or slow beyond redis.timeout, the shared counter
table full), `fault_tolerant` serves the call without limit or headers and logs it (at most once
every 10 seconds per worker, with the count in GET /status under rate-limiting);
otherwise the call gets Kong's 500. Each worker reports its figures to the master every second
(services.py sums them for GET /status).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Any, ClassVar, Final
from zoneinfo import ZoneInfo

from tollway.counters import Key, SharedCounters, TableFull, key_of
from tollway.plugins import base
from tollway.plugins.rate_limiting.cluster import ClusterPolicy, ClusterUnavailable
from tollway.plugins.rate_limiting.local import LocalPolicy
from tollway.plugins.rate_limiting.redis_policy import RedisPolicy, RedisUnavailable
from tollway.plugins.rate_limiting.schema import PERIODS, SCHEMA
from tollway.plugins.rate_limiting.windows import Windows
from tollway.proxy.call import Call as ProxyCall
from tollway.proxy.call import HeaderBlock

try:  # the header block built in C (setup.py's C_MODULES); Handler.python_block() without it
    from tollway.plugins.rate_limiting._headers import block as _c_block
except ImportError:  # built without a C compiler
    _c_block = None  # type: ignore[assignment]

log = logging.getLogger("tollway.rate-limiting")

HEADER_NAMES = {period: (f"X-RateLimit-Limit-{period.title()}", f"X-RateLimit-Remaining-{period.title()}")
                for period in PERIODS}
RATELIMIT_LIMIT: Final = b"RateLimit-Limit"
RATELIMIT_REMAINING: Final = b"RateLimit-Remaining"
RATELIMIT_RESET: Final = b"RateLimit-Reset"
RETRY_AFTER: Final = b"Retry-After"
UNEXPECTED = "An unexpected error occurred"  # Kong's 500 body
ROWS = "rate-limiting.rows"   # runtime.indexes: id(config) -> the plugin row, to key counters by plugin
KEY_CACHE_SIZE = 65_536       # identities whose counter keys a handler remembers
LOG_EVERY = 10.0              # seconds between two logs of a failing store
_clock: Final = time.time     # bound once (Performance notes: shared counters)


REPORT_NAME: Final = "rate-limiting"  # the worker's report to the master (services.py)


class Figures:
    """What a worker's rate-limiting did, for GET /status: counts since its last report, and
    whether its counters' store fails now."""

    def __init__(self, writer_id: str) -> None:
        self.writer_id = writer_id
        self.refused = 0
        self.store_failures = 0
        self.served_unlimited = 0
        self.failing = False
        self.reported_failing = False

    def take(self) -> dict[str, Any] | None:
        """The report: the counts since the last one (then zero) and `failing`; None when nothing changed."""
        if not (self.refused or self.store_failures or self.served_unlimited) \
                and self.failing == self.reported_failing:
            return None
        report = {"writer": self.writer_id, "failing": self.failing, "refused": self.refused,
                  "store_failures": self.store_failures, "served_unlimited": self.served_unlimited}
        self.refused = self.store_failures = self.served_unlimited = 0
        self.reported_failing = self.failing
        return report


class Handler(base.Handler):
    """Counts calls per window and refuses those beyond a limit (Kong's rate-limiting)."""

    PRIORITY: ClassVar[int] = SCHEMA["priority"]
    counters: ClassVar[SharedCounters | None] = None   # the node's (set by init_worker)
    figures: ClassVar[Figures]                         # the worker's, reported to the master
    last_logged: ClassVar[float] = 0.0

    def __init__(self, conf: dict[str, Any], runtime: base.Runtime) -> None:
        super().__init__(conf, runtime)
        self.periods = tuple(period for period in PERIODS if conf.get(period) is not None)
        # Kong admits while what remains is above 0: a limit of 2.5 admits 3 calls
        self.limits: list[int] = [math.ceil(conf[period]) for period in self.periods]
        self.shown_limits = [_number(conf[period]) for period in self.periods]
        self.shown_bytes = [shown.encode() for shown in self.shown_limits]
        # the lines that are the same for every call, and the start of each period's remaining line, made once
        limit_names = [HEADER_NAMES[period][0].encode() for period in self.periods]
        self.remaining_names = [HEADER_NAMES[period][1].encode() for period in self.periods]
        self.limit_lines = [b"%s: %s\r\n" % item for item in zip(limit_names, self.shown_bytes, strict=True)]
        self.remaining_starts = [name + b": " for name in self.remaining_names]
        self.tightest_lines = [b"%s: %s\r\n" % (RATELIMIT_LIMIT, shown) for shown in self.shown_bytes]
        self.layout = (self.limit_lines, self.remaining_starts, self.tightest_lines)  # as _headers.c takes them
        names = [name.lower() for name in limit_names] + [name.lower() for name in self.remaining_names] \
            + [RATELIMIT_LIMIT.lower(), RATELIMIT_REMAINING.lower(), RATELIMIT_RESET.lower()]
        self.header_names = frozenset(names)
        self.refusal_header_names = frozenset([*names, RETRY_AFTER.lower()])
        self.windows = Windows(self.periods, ZoneInfo(conf.get("tz") or "UTC"))
        self.limit_by: str = conf.get("limit_by") or "consumer"
        self.header_name: str = conf.get("header_name") or ""
        self.path: str = conf.get("path") or ""
        self.hide = bool(conf.get("hide_client_headers"))
        self.fault_tolerant = bool(conf.get("fault_tolerant", True))
        self.error_code = int(conf.get("error_code") or 429)
        self.error_message: str = conf.get("error_message") or "API rate limit exceeded"
        self.scope = _scope(conf, runtime)
        self.redis = RedisPolicy.of(conf["redis"], self.scope, self.periods, self.limits) \
            if conf.get("policy") == "redis" else None
        self.cluster = ClusterPolicy(self.scope, self.periods) if conf.get("policy") == "cluster" else None
        self.local = LocalPolicy(self.counters) if self.redis is None and self.cluster is None \
            and self.counters is not None else None
        self._keys: dict[str, list[Key]] = {}

    @classmethod
    def init_worker(cls, worker: Any) -> None:
        Handler.counters = worker.counters
        Handler.figures = Figures(str(getattr(worker, "writer_id", "")))
        if getattr(worker, "settings", None) is not None:
            ClusterPolicy.prefix = str(worker.settings.prefix)
        reports = getattr(worker, "reports", None)
        if reports is not None:
            reports[REPORT_NAME] = Handler.figures.take

    def identify(self, call: base.Call) -> str:
        """What the call counts for (Kong's get_identifier): the client's IP when the configured
        identity is unknown."""
        limit_by = self.limit_by
        found: Any = None
        if limit_by == "consumer":
            found = (call.consumer or call.credential or {}).get("id")
        elif limit_by == "credential":
            found = (call.credential or {}).get("id")
        elif limit_by == "service":
            found = (call.service or {}).get("id")
        elif limit_by == "header":
            found = call.header(self.header_name)
        elif limit_by == "path" and call.path == self.path:
            found = call.path
        return found if found else call.forwarded_ip

    def access(self, call: base.Call) -> Any:
        identity = self.identify(call)
        now = int(_clock())
        ends = self.windows.ends(now)
        if self.redis is not None:
            return self._take_remote(call, identity, ends, now)
        if self.cluster is not None:
            return self._take_cluster(call, identity, ends, now)
        local = self.local
        if local is None:
            return self._unavailable("the node's shared counters are not open")
        try:
            admitted, counts = local.take(self._local_keys(identity), ends, self.limits, now)
        except TableFull:
            return self._unavailable("the shared counter table is full (raise shared_counters_slots)")
        return self._answer(call, admitted, counts, ends, now)

    def _take_remote(self, call: base.Call, identity: str, ends: list[int], now: int) -> asyncio.Future[Any]:
        assert self.redis is not None
        answer: asyncio.Future[base.Reply | None] = asyncio.get_running_loop().create_future()
        self.redis.take(identity, ends, _RemoteCall(self, call, ends, now, answer))
        return answer

    async def _take_cluster(self, call: base.Call, identity: str, ends: list[int], now: int) -> base.Reply | None:
        assert self.cluster is not None
        try:
            admitted, counts = await self.cluster.take(identity, ends, self.limits)
        except ClusterUnavailable as exc:
            return self._unavailable(f"the cluster's counters failed: {exc}")
        return self._answer(call, admitted, counts, ends, now)

    def _local_keys(self, identity: str) -> list[Key]:
        keys = self._keys.get(identity)
        if keys is None:
            if len(self._keys) >= KEY_CACHE_SIZE:
                self._keys.clear()
            keys = self._keys[identity] = [key_of(f"rate-limiting|{self.scope}|{period}|{identity}")
                                           for period in self.periods]
        return keys

    def _answer(self, call: base.Call, admitted: bool, counts: list[int], ends: list[int],
                now: int) -> base.Reply | None:
        figures = self.figures
        if figures.failing:
            figures.failing = False
        if not self.hide:
            if isinstance(call, ProxyCall):  # the proxy's own: the headers go as one ready-made block
                call.set_response_block(self.header_block(counts, ends, now, rejected=not admitted))
            else:
                for name, value in limit_headers(self.periods, self.shown_limits, self.limits, counts, ends, now,
                                                 rejected=not admitted):
                    call.set_response_header(name, value)
        if admitted:
            return None
        figures.refused += 1
        return base.Reply(self.error_code, {"message": self.error_message})

    def header_block(self, counts: list[int], ends: list[int], now: int, rejected: bool) -> HeaderBlock:
        """limit_headers() as a block of the proxy's response headers (set: replacing the upstream's)."""
        names = self.refusal_header_names if rejected else self.header_names
        if _c_block is None:
            return HeaderBlock(self.python_lines(counts, ends, now, rejected), names)
        return HeaderBlock(_c_block(self.layout, self.limits, counts, ends, now, rejected), names)

    def python_lines(self, counts: list[int], ends: list[int], now: int, rejected: bool) -> bytes:
        """header_block()'s lines in Python, for a build without _headers.c (and to test it against)."""
        parts: list[bytes] = []
        limits = self.limits
        tightest = -1
        remaining = 0
        remaining_value = b""
        for i, remaining_start in enumerate(self.remaining_starts):
            left = limits[i] - counts[i]
            if left < 0:
                left = 0
            value = str(left).encode()
            parts += [self.limit_lines[i], remaining_start, value, b"\r\n"]
            if tightest < 0 or left <= remaining:  # on a tie, the later period: the longer window
                tightest, remaining, remaining_value = i, left, value
        reset_value = str(max(ends[tightest] - now, 1)).encode()
        parts.append(self.tightest_lines[tightest])
        parts.append(b"RateLimit-Remaining: %s\r\nRateLimit-Reset: %s\r\n" % (remaining_value, reset_value))
        if rejected:
            parts.append(b"Retry-After: %s\r\n" % reset_value)
        return b"".join(parts)

    def _unavailable(self, why: str) -> base.Reply | None:
        """The counters could not be reached: serve (fault_tolerant) or answer Kong's 500."""
        figures = self.figures
        figures.failing = True
        figures.store_failures += 1
        if self.fault_tolerant:
            figures.served_unlimited += 1
        moment = time.monotonic()
        if moment - Handler.last_logged >= LOG_EVERY:
            Handler.last_logged = moment
            log.error("rate-limiting: %s; %s", why,
                      "serving calls without limits (fault_tolerant)" if self.fault_tolerant else "answering 500")
        return None if self.fault_tolerant else base.Reply(500, {"message": UNEXPECTED})


class _RemoteCall:
    """A call waiting for Redis: Redis's answer, (admitted, counts after) or RedisUnavailable, made
    into the call's Reply (or None), which its future gives the proxy."""

    __slots__ = ("handler", "call", "ends", "now", "answer")

    def __init__(self, handler: Handler, call: base.Call, ends: list[int], now: int,
                 answer: asyncio.Future[Any]) -> None:
        self.handler = handler
        self.call = call
        self.ends = ends
        self.now = now
        self.answer = answer

    def __call__(self, taken: Any) -> None:
        answer = self.answer
        if answer.done():  # cancelled
            return
        handler = self.handler
        try:
            if isinstance(taken, RedisUnavailable):
                answer.set_result(handler._unavailable(f"Redis failed: {taken}"))
            else:
                answer.set_result(handler._answer(self.call, taken[0], taken[1], self.ends, self.now))
        except Exception as exc:
            answer.set_exception(exc)


def limit_headers(periods: tuple[str, ...], shown: list[str], limits: list[int], counts: list[int],
                  ends: list[int], now: int, rejected: bool) -> list[tuple[str, str]]:
    """Kong's headers: X-RateLimit-Limit-<Period> and -Remaining-<Period> for each period,
    RateLimit-Limit, -Remaining and -Reset for the tightest (least remaining, then the longer
    window), and Retry-After (its reset) when the call is refused."""
    headers: list[tuple[str, str]] = []
    tightest = -1
    remaining = 0
    for i, period in enumerate(periods):
        left = max(limits[i] - counts[i], 0)
        limit_name, remaining_name = HEADER_NAMES[period]
        headers.append((limit_name, shown[i]))
        headers.append((remaining_name, str(left)))
        if tightest < 0 or left <= remaining:  # on a tie, the later period: the longer window
            tightest, remaining = i, left
    reset = str(max(ends[tightest] - now, 1))
    headers += [("RateLimit-Limit", shown[tightest]), ("RateLimit-Remaining", str(remaining)),
                ("RateLimit-Reset", reset)]
    if rejected:
        headers.append(("Retry-After", reset))
    return headers


def _number(value: float) -> str:
    """A limit as Kong shows it: 10, or 2.5."""
    return str(int(value)) if value == int(value) else str(value)


def _scope(conf: dict[str, Any], runtime: Any) -> str:
    """What names this plugin's counters: its row's id, found through its config."""
    indexes: dict[str, Any] | None = getattr(runtime, "indexes", None)
    rows: dict[int, dict[str, Any]] | None = None
    if indexes is not None:
        rows = indexes.get(ROWS)
        if rows is None:
            rows = indexes[ROWS] = {id(row.get("config")): row for row in runtime.snapshot.get("plugins") or ()
                                    if row.get("name") == SCHEMA["name"]}
    row = (rows or {}).get(id(conf))
    if row is not None and row.get("id"):
        return str(row["id"])
    return str(key_of(repr(sorted(conf.items()))).high)


Handler.figures = Figures("")
