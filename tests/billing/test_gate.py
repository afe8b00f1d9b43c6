"""The phase-2 gate, decided from the snapshot: which hard entitlements a call counts against, in
which window, counted exactly across worker processes with SharedCounters."""

from __future__ import annotations

import multiprocessing
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from tollway.billing.daos import subscription_for_workers
from tollway.billing.gate import EntitlementIndex, limit_headers, reservation, settlement
from tollway.billing.subscription_writes import with_timeline
from tollway.billing.subscriptions import Timeline
from tollway.billing.versions import PlanVersion
from tollway.counters import SharedCounters

BERLIN = ZoneInfo("Europe/Berlin")
SERVICE, OTHER_SERVICE, ROUTE = "s" * 36, "o" * 36, "r" * 36
POPPY, DIGIT = "poppy-id", "digit-id"


def at(*fields: int) -> int:
    return int(datetime(*fields, tzinfo=BERLIN).timestamp())


def meter(name: str, **filters: Any) -> dict[str, Any]:
    return {"name": name, "aggregation": filters.pop("aggregation", "count"), "field": filters.pop("field", None),
            "service": filters.pop("service", None), "route": filters.pop("route", None),
            "status": filters.pop("status", None)}


def version(*entitlements: tuple[dict[str, Any], int, str, str]) -> PlanVersion:
    return PlanVersion.from_json({
        "name": "pro", "currency": "EUR", "interval": "month", "billing_anchor": "calendar", "base_fee": "0",
        "trial_days": 0, "minimum_commitment": None, "charges": {},
        "meters": {m["name"]: m for m, _, _, _ in entitlements},
        "entitlements": [{"meter": m["name"], "limit": limit, "period": period, "enforcement": enforcement}
                         for m, limit, period, enforcement in entitlements]})


CALLS = meter("calls", service=SERVICE)
OK_CALLS = meter("ok-calls", status=["2xx"])
UPLOADS = meter("uploads", aggregation="sum", field="request_bytes")
PRO = version((CALLS, 3, "minute", "hard"), (CALLS, 10, "day", "hard"), (OK_CALLS, 5, "billing_period", "hard"),
              (UPLOADS, 1000, "day", "hard"), (meter("soft"), 1, "day", "soft"))
BASIC = version((CALLS, 1, "minute", "hard"))


def snapshot_entry(sub_id: str, consumer: str, timeline: Timeline, now: int) -> dict[str, Any]:
    entity = with_timeline({"id": sub_id, "consumer": {"id": consumer}, "tz": timeline.tz.key}, timeline, now)
    return subscription_for_workers(entity)


def index_of(now: int) -> EntitlementIndex:
    poppy = Timeline.start(at(2027, 3, 1), BERLIN, "pro-id", 1, PRO).schedule(at(2027, 3, 10), "basic-id", 1, BASIC)
    digit = Timeline.start(at(2027, 3, 1), BERLIN, "pro-id", 1, PRO).cancel(at(2027, 3, 10, 12), False)
    return EntitlementIndex.compile([snapshot_entry("sub-poppy", POPPY, poppy, now),
                                     snapshot_entry("sub-digit", DIGIT, digit, now)])


def described(checks: list[Any]) -> list[tuple[str, str, int, str]]:
    return [(c.meter.name, c.period, c.limit, datetime.fromtimestamp(c.window_end, BERLIN).isoformat())
            for c in checks]


def test_a_call_counts_against_the_hard_entitlements_whose_meter_matches_it():
    index = index_of(at(2027, 3, 10))
    now = at(2027, 3, 28, 12, 0, 30)  # the spring-forward day in Berlin
    assert described(index.checks(POPPY, SERVICE, ROUTE, at(2027, 3, 10, 9))) == [
        ("calls", "minute", 3, "2027-03-10T09:01:00+01:00"),
        ("calls", "day", 10, "2027-03-11T00:00:00+01:00"),
        ("ok-calls", "billing_period", 5, "2027-04-01T00:00:00+02:00"),
        ("uploads", "day", 1000, "2027-03-11T00:00:00+01:00"),
    ]
    # another service: the calls meter (filtered on SERVICE) does not apply; soft limits never do
    assert [c.meter.name for c in index.checks(POPPY, OTHER_SERVICE, ROUTE, at(2027, 3, 10, 9))] == \
        ["ok-calls", "uploads"]
    # the scheduled change to basic applies at the next period without a configuration push
    assert described(index.checks(POPPY, SERVICE, ROUTE, at(2027, 4, 1, 0, 0, 1))) == [
        ("calls", "minute", 1, "2027-04-01T00:01:00+02:00")]
    assert index.checks(POPPY, SERVICE, ROUTE, at(2027, 2, 28, 23, 59)) == []  # not started yet
    assert len(index.checks(DIGIT, SERVICE, ROUTE, at(2027, 3, 10, 12, 0, 59))) == 4
    assert index.checks(DIGIT, SERVICE, ROUTE, at(2027, 3, 10, 12, 1)) == []  # cancelled: ended with that minute
    assert index.checks("nobody", SERVICE, ROUTE, now) == []


def test_counters_of_two_phases_are_apart_and_windows_reset_at_local_midnight():
    index = index_of(at(2027, 3, 10))
    day = [c for c in index.checks(POPPY, SERVICE, ROUTE, at(2027, 3, 27, 23, 59)) if c.period == "day"][0]
    next_day = [c for c in index.checks(POPPY, SERVICE, ROUTE, at(2027, 3, 28, 0, 1)) if c.period == "day"][0]
    assert day.key == next_day.key and next_day.window_end - day.window_end == 23 * 3600  # a 23-hour day
    pro_minute = index.checks(POPPY, SERVICE, ROUTE, at(2027, 3, 31, 23, 59))[0]
    basic_minute = index.checks(POPPY, SERVICE, ROUTE, at(2027, 4, 1, 0, 0))[0]
    assert pro_minute.key != basic_minute.key


def test_the_gate_admits_exactly_the_limit_and_does_not_count_refused_calls(tmp_path: Path):
    table = SharedCounters(tmp_path / "counters", 1024, create=True)
    index = index_of(at(2027, 3, 10))
    now = at(2027, 3, 10, 9, 0, 0)
    admitted = []
    for second in range(5):
        checks = index.checks(POPPY, SERVICE, ROUTE, now + second)
        ok, counts = table.add(*reservation(checks), 1, now + second)
        admitted.append(ok)
        headers = dict(limit_headers(checks, counts, now + second, rejected=not ok))
    assert admitted == [True, True, True, False, False]  # 3 a minute
    assert headers["X-RateLimit-Remaining-Minute"] == "0" and headers["X-RateLimit-Limit-Minute"] == "3"
    assert headers["X-RateLimit-Remaining-Day"] == "7"  # the refused calls were not counted
    assert headers["RateLimit-Remaining"] == "0" and headers["Retry-After"] == "56"
    assert table.add(*reservation(index.checks(POPPY, SERVICE, ROUTE, now + 60)), 1, now + 60)[0]  # next minute


def test_settlement_gives_back_what_does_not_count_and_adds_bytes():
    index = index_of(at(2027, 3, 10))
    now = at(2027, 3, 10, 9)
    checks = index.checks(POPPY, SERVICE, ROUTE, now)
    deltas = {(check.meter.name, check.period): delta for check in checks
              for key, _end, delta in settlement(checks, 404, 2500, 10, now) if key == check.key}
    assert deltas == {("ok-calls", "billing_period"): -1, ("uploads", "day"): 2499}
    assert settlement(checks, 200, 1, 0, now) == []
    assert settlement(checks, 404, 0, 0, at(2027, 4, 2)) == []  # every window ended meanwhile


def _hammer(path: str, snapshot: list[dict[str, Any]], tries: int, now: int, out: Any) -> None:
    table = SharedCounters(path, 1024)
    index = EntitlementIndex.compile(snapshot)  # each worker compiles its own, from the same snapshot
    admitted = 0
    for _ in range(tries):
        checks = index.checks(DIGIT, SERVICE, ROUTE, now)
        checks = [check for check in checks if check.period == "day"]
        admitted += table.add(*reservation(checks), 1, now)[0]
    out.put(admitted)


def test_two_worker_processes_admit_exactly_the_daily_limit(tmp_path: Path):
    path = str(tmp_path / "counters")
    SharedCounters(path, 1024, create=True).close()
    digit = Timeline.start(at(2027, 3, 1), BERLIN, "pro-id", 1, PRO)
    snapshot = [snapshot_entry("sub-digit", DIGIT, digit, at(2027, 3, 1))]
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    workers = [ctx.Process(target=_hammer, args=(path, snapshot, 400, at(2027, 3, 10, 9), out)) for _ in range(2)]
    for worker in workers:
        worker.start()
    admitted = [out.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(10)
    assert sum(admitted) == 10  # 800 tried; 10 a day for calls, the limit that binds
