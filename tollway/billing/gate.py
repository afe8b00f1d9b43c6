"""Hard entitlements at the gate: which limits a call counts against, decided from the snapshot.

The billable plugin (tollway/plugins/billable/handler.py) applies it; the decision is pure and
lives here. A worker compiles `EntitlementIndex.compile(snapshot["subscriptions"])` once per configuration (next to its
routes) and, per call, once key-auth has named the consumer and the router the route:

    checks = index.checks(consumer_id, service_id, route_id, now)      # usually () : nothing to do
    admitted, counts = counters.add(*reservation(checks), 1, now)      # tollway.counters, one lock
    if not admitted: answer 429 with limit_headers(checks, counts, now, rejected=True)
    ... proxy the call, then, with its status and byte counts:
    for key, window_end, delta in settlement(checks, status, request_bytes, response_bytes, now):
        counters.add([key], [window_end], [UNBOUNDED], delta, now)

How a call finds its limits: consumer -> its subscription active now -> the phase in effect (plan
version) -> that version's hard entitlements whose meter's service and route match the call. A
subscription's phases carry their entitlements with the meters inlined (subscriptions.py), so
the snapshot holds everything and no worker reads a database. A scheduled plan change or cancel is
already in the phases: the gate follows it at its instant, with no configuration push.

Counting, exactly, with SharedCounters (one table per node, every worker maps it):
- A counter is one entitlement of one phase of one subscription; its key names them, and its
  window end (windows.py, in the subscription's time zone) is the window's identity: a new window
  starts at 0 on its own. A phase that begins mid-window starts its counters at 0, as the usage
  answer (usage.py) counts a window from the phase's start.
- The gate reserves 1 on every check at once, under the table's lock: either all have room
  (count + 1 <= limit) or the call is refused and nothing is counted, as Kong's rate-limiting does
  not count refused calls. Concurrent workers cannot over-admit.
- A meter with a status filter cannot know the status before the call: the reservation is given
  back once the status is known not to match. In between, a call that will not count may hold a
  unit: the gate can refuse early, never admit beyond the limit.
- A byte meter (sum) cannot know the size before the call: the gate reserves 1, which admits the
  call only while the count is below the limit, and the settlement adds the bytes less that 1. The
  call that crosses a byte limit is served; the ones after it are refused.
- A window that ended before the settlement is left alone (its count no longer matters).

Counters are per node: a cluster of N nodes admits up to N times a limit, until a shared store
backs them. Calls the gate refuses are recorded by the billable plugin with status 429, as Kong
records refusals, so a meter with no status filter counts them: give a meter that prices calls a
status filter (`["2xx"]`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from tollway.billing.meters import Meter
from tollway.billing.periods import BillingCycle
from tollway.billing.windows import window_at
from tollway.counters import Key, key_of

UNBOUNDED = (1 << 62)  # the limit a settlement is added under: it always has room
NEVER = 1 << 62        # the end of a phase or subscription that has none


class Check(NamedTuple):
    """One hard entitlement a call counts against, in its current window."""

    key: Key
    window_end: int
    limit: int
    meter: Meter
    period: str


@dataclass(frozen=True)
class _Entitlement:
    meter: Meter
    limit: int
    period: str
    key: Key


@dataclass
class _Phase:
    starts_at: int
    ends_at: int
    tz: ZoneInfo
    cycle: BillingCycle
    entitlements: tuple[_Entitlement, ...]
    billing_window: tuple[int, int] = (0, 0)  # cached: the billing period holding the last call


class EntitlementIndex:
    """Consumer id -> the phases of its subscriptions that have hard entitlements, compiled once."""

    def __init__(self, phases: Mapping[str, tuple[_Phase, ...]]) -> None:
        self.phases = phases
        self._windows: dict[tuple[str, str], tuple[int, int]] = {}  # (tz, period) -> the window of the last call

    @classmethod
    def compile(cls, subscriptions: Iterable[Mapping[str, Any]]) -> EntitlementIndex:
        """From the snapshot's subscriptions (daos.subscription_for_workers' form)."""
        by_consumer: dict[str, list[_Phase]] = {}
        for subscription in subscriptions:
            tz = ZoneInfo(subscription["tz"])
            started, ended = subscription["started_at"], subscription.get("ends_at")
            for phase in subscription["phases"]:
                hard = [item for item in phase["entitlements"] if item["enforcement"] == "hard"]
                if not hard:
                    continue
                starts_at = max(phase["starts_at"], started)
                ends_at = min(NEVER if phase.get("ends_at") is None else phase["ends_at"],
                              NEVER if ended is None else ended)
                version = f"{subscription['id']}|{phase['starts_at']}|{phase['plan']['id']}:{phase['plan_version']}"
                cycle = BillingCycle.for_subscription(phase["interval"], phase["billing_anchor"], tz,
                                                      phase["anchored_at"])
                compiled = tuple(_Entitlement(Meter.from_json(item["meter"]), int(item["limit"]), item["period"],
                                              key_of(f"entitlement|{version}|{item['meter']['name']}|{item['period']}"))
                                 for item in hard)
                by_consumer.setdefault(subscription["consumer"]["id"], []).append(
                    _Phase(starts_at, ends_at, tz, cycle, compiled))
        return cls({consumer: tuple(sorted(phases, key=lambda p: p.starts_at))
                    for consumer, phases in by_consumer.items()})

    def checks(self, consumer_id: str, service_id: str, route_id: str, now: int) -> list[Check]:
        """The hard entitlements a call of this consumer to this service and route ('' for none)
        counts against now, each with its window's end; empty when none applies."""
        phases = self.phases.get(consumer_id)
        if phases is None:
            return []
        for phase in phases:
            if phase.starts_at <= now < phase.ends_at:
                return [Check(item.key, self._window_end(phase, item.period, now), item.limit, item.meter,
                              item.period)
                        for item in phase.entitlements if item.meter.matches_target(service_id, route_id)]
        return []

    def _window_end(self, phase: _Phase, period: str, now: int) -> int:
        if period == "billing_period":
            start, end = phase.billing_window
            if not start <= now < end:
                start, end = phase.billing_window = window_at(period, now, phase.tz, phase.cycle)
            return end
        cached = (phase.tz.key, period)
        start, end = self._windows.get(cached, (0, 0))
        if not start <= now < end:
            start, end = self._windows[cached] = window_at(period, now, phase.tz, phase.cycle)
        return end


def reservation(checks: list[Check]) -> tuple[list[Key], list[int], list[int]]:
    """SharedCounters.add's keys, window ends and limits for reserving 1 on every check."""
    return [c.key for c in checks], [c.window_end for c in checks], [c.limit for c in checks]


def settlement(checks: list[Check], status: int, request_bytes: int, response_bytes: int,
               now: int) -> list[tuple[Key, int, int]]:
    """(key, window end, delta) to add once the call is done: a reservation given back where the
    status does not count, a byte meter's bytes less the 1 reserved; windows that ended are skipped."""
    deltas = []
    for check in checks:
        if check.window_end <= now:
            continue
        if not check.meter.matches_status(status):
            deltas.append((check.key, check.window_end, -1))
        elif check.meter.aggregation == "sum":
            size = request_bytes if check.meter.field == "request_bytes" else response_bytes
            if size != 1:
                deltas.append((check.key, check.window_end, size - 1))
    return deltas


HEADER_PERIODS = {"minute": "Minute", "hour": "Hour", "day": "Day", "month": "Month",
                  "billing_period": "Billing-Period"}


def limit_headers(checks: list[Check], counts: list[int], now: int, rejected: bool) -> list[tuple[str, str]]:
    """Kong rate-limiting's headers for these checks and the counts SharedCounters.add returned:
    X-RateLimit-Limit-<Period> and -Remaining-<Period> (the tightest check of each period),
    RateLimit-Limit, -Remaining and -Reset for the tightest check, and Retry-After when refused."""
    if not checks:
        return []
    remaining = [max(check.limit - count, 0) for check, count in zip(checks, counts, strict=True)]
    per_period: dict[str, tuple[int, int]] = {}
    for check, left in zip(checks, remaining, strict=True):
        if check.period not in per_period or left < per_period[check.period][1]:
            per_period[check.period] = (check.limit, left)
    headers = []
    for period, (limit, left) in per_period.items():
        name = HEADER_PERIODS[period]
        headers += [(f"X-RateLimit-Limit-{name}", str(limit)), (f"X-RateLimit-Remaining-{name}", str(left))]
    # the tightest: least remaining, then (as Kong) the longer window
    tightest = min(range(len(checks)), key=lambda i: (remaining[i], -checks[i].window_end))
    reset = max(checks[tightest].window_end - now, 1)
    headers += [("RateLimit-Limit", str(checks[tightest].limit)), ("RateLimit-Remaining", str(remaining[tightest])),
                ("RateLimit-Reset", str(reset))]
    if rejected:  # when every exhausted window has reset
        waits = [check.window_end - now for check, left in zip(checks, remaining, strict=True) if left == 0]
        headers.append(("Retry-After", str(max(max(waits, default=reset), 1))))
    return headers
