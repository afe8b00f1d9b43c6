"""The figures the dashboard and the portal show, read by the JSON API's own code.

Traffic comes from `UsageQuery` and `UsageReport` (GET /billable's), percentiles from the latency
histograms (`latency_report.over_range`, the histograms /billable reads), a consumer's money and
entitlements from `usage_reads` (GET /consumers/{c}/usage's): one code path, so a page and the API
never disagree. Each `Traffic` keeps the /billable parameters that answer the same figures.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import func, select

from tollway.billing import tables as billing_tables
from tollway.billing import usage_reads
from tollway.billing.ledger_usage import RetentionExceeded
from tollway.config import Settings
from tollway.metering import latency_report
from tollway.metering.latency import merge, percentile
from tollway.metering.query import MAX_SIZE, UsageQuery
from tollway.metering.report import UsageReport
from tollway.metering.tables import names
from tollway.store.db import Database
from tollway.store.entities.consumers import CONSUMERS
from tollway.store.entities.dao import Dao

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Span:
    """A range the pages offer: its length back from now and the period of its chart's buckets."""

    name: str
    seconds: int
    period: str
    label: str


SPANS = {span.name: span for span in (Span("hour", 3600, "minute", "last hour"),
                                      Span("day", 86400, "hour", "last 24 hours"),
                                      Span("month", 30 * 86400, "day", "last 30 days"))}
CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
TOP = 10
ALERT_AT = 0.8  # an entitlement used to this share of its limit or more is a quota alert
MAX_ALERTS = 50
# Seconds between two computations of the quota alerts: each prices every active subscription (some
# seconds of CPU for 10,000), which the Admin API's process should not do twice a minute.
ALERTS_EVERY = 300.0
_CONSUMERS = Dao(CONSUMERS)


STEP = {"minute": 60, "hour": 3600, "day": 86400}


def span_start(span: Span, now: int) -> int:
    """The start of the span ending now, on a whole bucket of its chart (UTC): the ledger answers a
    range from a day's start with day rows, whereas a range from a minute needs minute rows."""
    start = now - span.seconds
    return start - start % STEP[span.period]


async def _report(db: Database, settings: Settings, params: Mapping[str, str], now: int) -> UsageReport:
    return await UsageReport.prepare(db, settings, UsageQuery.parse(params, now))


@dataclass
class Traffic:
    """Calls per chart bucket and status class over a span, with their totals."""

    span: Span
    start: int
    billable: dict[str, str]                      # the /billable parameters of the same figures
    times: list[int] = field(default_factory=list)
    calls: dict[str, list[int]] = field(default_factory=dict)
    by_class: dict[str, int] = field(default_factory=dict)
    total: int = 0
    latency_us_sum: int = 0

    @property
    def errors(self) -> int:
        return self.by_class.get("5xx", 0)

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.total if self.total else None

    @property
    def latency_ms_avg(self) -> float | None:
        return round(self.latency_us_sum / self.total / 1000, 3) if self.total else None

    def per_minute(self) -> dict[str, list[float]]:
        """Calls per minute in each bucket, per status class (the chart's series)."""
        minutes = STEP[self.span.period] // 60
        return {name: [round(count / minutes, 3) for count in counts] for name, counts in self.calls.items()}


async def traffic(db: Database, settings: Settings, span: Span, now: int, consumer: str | None = None,
                  start: int | None = None, end: int | None = None) -> Traffic:
    """Calls per `span.period` by status class over the span ending now (a consumer's, if named), or
    over [start, end) of it."""
    first = span_start(span, now) if start is None else start
    params = {"period": span.period, "start": str(first), "group_by": "status"}
    if end is not None:
        params["end"] = str(end)
    if consumer is not None:
        params["consumer"] = consumer
    report = await _report(db, settings, params, now)
    if consumer is not None and report.filters.get("consumer") != [consumer]:
        raise LookupError(f"'{consumer}' is not one consumer's id")  # a page reads one consumer, by id
    found = Traffic(span, first, params, times=list(report.plan.starts))
    index = {moment: i for i, moment in enumerate(found.times)}
    found.calls = {name: [0] * len(found.times) for name in CLASSES}
    async for batch in report.batches():
        for row in batch:
            pstart, status, requests, latency = row[0], row[8], int(row[9]), int(row[12])
            name = f"{int(status) // 100}xx"
            if name in found.calls:
                found.calls[name][index[pstart]] += requests
            found.by_class[name] = found.by_class.get(name, 0) + requests
            found.total += requests
            found.latency_us_sum += latency
    return found


def joined(first: Traffic, then: Traffic) -> Traffic:
    """One span's traffic from two adjacent ranges of it (`then` right after `first`)."""
    found = Traffic(first.span, first.start, {key: value for key, value in first.billable.items() if key != "end"},
                    times=first.times + then.times, total=first.total + then.total,
                    latency_us_sum=first.latency_us_sum + then.latency_us_sum)
    found.calls = {name: first.calls[name] + then.calls[name] for name in CLASSES}
    found.by_class = {name: first.by_class.get(name, 0) + then.by_class.get(name, 0)
                      for name in {*first.by_class, *then.by_class}}
    return found


@dataclass(frozen=True)
class Ranked:
    """A consumer or route over a span: its calls, and for a route its latency percentiles."""

    id: str
    name: str
    requests: int
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None


@dataclass(frozen=True)
class Latency:
    p50: float | None
    p95: float | None
    p99: float | None


@dataclass
class Totals:
    """Calls per consumer and per route over a range, and each route's latency histogram."""

    consumers: dict[str, list[Any]] = field(default_factory=dict)   # id -> [None, calls] (named when ranked)
    routes: dict[str, list[Any]] = field(default_factory=dict)
    histograms: dict[str, dict[int, int]] = field(default_factory=dict)  # route id -> bucket -> calls

    def add(self, other: Totals) -> Totals:
        """These totals with `other`'s (a later range: its names win) added."""
        found = Totals({key: list(value) for key, value in self.consumers.items()},
                       {key: list(value) for key, value in self.routes.items()},
                       {key: dict(value) for key, value in self.histograms.items()})
        for mine, theirs in ((found.consumers, other.consumers), (found.routes, other.routes)):
            for key, (name, calls) in theirs.items():
                entry = mine.setdefault(key, [name, 0])
                entry[0] = name
                entry[1] += calls
        for key, counts in other.histograms.items():
            merge(found.histograms.setdefault(key, {}), counts.items())
        return found

    def top_consumers(self) -> list[Ranked]:
        """The TOP consumers by calls, unnamed (`named` names them)."""
        ranked = sorted(self.consumers.items(), key=lambda item: (-item[1][1], item[0]))[:TOP]
        return [Ranked(ident, name, calls) for ident, (name, calls) in ranked]

    def top_routes(self) -> list[Ranked]:
        ranked = []
        for ident, (name, calls) in sorted(self.routes.items(), key=lambda item: (-item[1][1], item[0]))[:TOP]:
            counts = self.histograms.get(ident, {})
            ranked.append(Ranked(ident, name, calls, percentile(counts, 0.5), percentile(counts, 0.95),
                                 percentile(counts, 0.99)))
        return ranked

    def latency(self) -> Latency:
        everything: dict[int, int] = {}
        for counts in self.histograms.values():
            merge(everything, counts.items())
        return Latency(percentile(everything, 0.5), percentile(everything, 0.95), percentile(everything, 0.99))


def range_params(start: int, end: int | None, group_by: str, period: str = "year") -> dict[str, str]:
    """/billable parameters summing [start, end) per key: one period (a year) unless the range spans two."""
    params = {"period": period, "start": str(start), "group_by": group_by, "size": str(MAX_SIZE)}
    if end is not None:
        params["end"] = str(end)
    return params


async def totals(db: Database, settings: Settings, start: int, end: int | None, now: int,
                 period: str = "year") -> Totals:
    """Calls per consumer and per route, and routes' histograms, over [start, end) (end None: now),
    read as /billable reads them with `period` (any: the periods are summed)."""
    found = Totals()
    # Every consumer's calls, unnamed (the few shown are named by `named`): thousands of rows.
    report = await _report(db, settings, range_params(start, end, "consumer", period), now)
    found.consumers = {ident: [None, calls] for ident, calls in (await report.calls_by("consumer")).items()}
    report = await _report(db, settings, range_params(start, end, "route", period), now)
    async for batch in report.batches():
        for row in batch:
            entry = found.routes.setdefault(row[6], [row[7] or row[6] or "(no route)", 0])
            entry[1] += int(row[9])
    async with db.connect() as conn:
        histograms = await latency_report.over_range(conn, report.query, report.plan, report.filters)
    found.histograms = {key[0]: counts for key, counts in histograms.items()}
    return found


async def named(db: Database, ranked: list[Ranked]) -> list[Ranked]:
    """Ranked consumers with the names /billable gives them: the consumer's username or custom id,
    the last known ones once it is deleted, else its id ("(no consumer)": calls without one)."""
    ids = [entry.id for entry in ranked if entry.id]
    consumers = _CONSUMERS.table
    async with db.connect() as conn:
        live = {row.id: row.username or row.custom_id for row in await conn.execute(
            select(consumers.c.id, consumers.c.username, consumers.c.custom_id).where(consumers.c.id.in_(ids)))}
        known = {row.id: row.name or row.custom_id for row in await conn.execute(
            select(names.c.id, names.c.name, names.c.custom_id).where(names.c.kind == "consumer",
                                                                    names.c.id.in_(ids)))}
    return [replace(entry, name=(live[entry.id] if entry.id in live else known.get(entry.id)) or entry.id
                    or "(no consumer)") for entry in ranked]


@dataclass(frozen=True)
class Alert:
    consumer: dict[str, Any]
    entitlement: dict[str, Any]

    @property
    def share(self) -> float:
        return self.entitlement["used"] / self.entitlement["limit"] if self.entitlement["limit"] else 1.0


async def quota_alerts(db: Database, settings: Settings, now: int) -> list[Alert]:
    """Entitlements of active subscriptions used to ALERT_AT of their limit or more, fullest first."""
    async with db.connect() as conn:
        readings = await usage_reads.all_readings(conn, now)
        if not readings:
            return []
        try:
            answers = await usage_reads.answers(conn, settings, readings, now)
        except RetentionExceeded:
            return []
        alerts = []
        for reading, answer in zip(readings, answers, strict=True):
            for entitlement in answer["entitlements"]:
                if entitlement["used"] >= ALERT_AT * entitlement["limit"]:
                    alerts.append(Alert(reading.subscription["consumer"], entitlement))
        alerts = sorted(alerts, key=lambda alert: -alert.share)[:MAX_ALERTS]
        consumers = _CONSUMERS.table
        ids = sorted({alert.consumer["id"] for alert in alerts})
        named = {row.id: row for row in await conn.execute(
            select(consumers.c.id, consumers.c.username, consumers.c.custom_id).where(consumers.c.id.in_(ids)))}
    return [Alert({"id": alert.consumer["id"], "username": getattr(named.get(alert.consumer["id"]), "username", None),
                   "custom_id": getattr(named.get(alert.consumer["id"]), "custom_id", None)}, alert.entitlement)
            for alert in alerts]


class QuotaWatch:
    """Quota alerts, recomputed in the background at most every `every` seconds (ALERTS_EVERY) while
    pages ask.

    Reading every active subscription's usage costs what an invoice run's reading does (seconds for
    10,000 subscriptions): a page must not wait for it, nor the Admin API's loop. The computation
    runs on a thread with its own loop and database connection; a page shows the latest alerts and
    when they were computed, and asking for them starts a new computation once they are older than
    `every`.
    """

    def __init__(self, settings: Settings, every: float = ALERTS_EVERY) -> None:
        self.settings, self.every = settings, every
        self.alerts: list[Alert] = []
        self.computed_at: int | None = None
        self.task: asyncio.Task[None] | None = None

    def current(self, now: int) -> tuple[list[Alert], int | None]:
        """The latest alerts and when they were computed (None: not yet)."""
        stale = self.computed_at is None or now - self.computed_at >= self.every
        if stale and (self.task is None or self.task.done()):
            self.task = asyncio.create_task(self._compute(now), name="quota alerts")
        return self.alerts, self.computed_at

    async def wait(self) -> None:
        """Until the computation under way (if any) is over."""
        if self.task is not None:
            await asyncio.shield(self.task)

    async def _compute(self, now: int) -> None:
        try:
            self.alerts = await asyncio.to_thread(asyncio.run, _alerts_apart(self.settings, now))
            self.computed_at = now
        except Exception:  # the page keeps the last alerts; the log says why
            log.exception("quota alerts could not be computed")


async def _alerts_apart(settings: Settings, now: int) -> list[Alert]:
    """quota_alerts on a database connection of its own (QuotaWatch's thread)."""
    db = Database.from_settings(settings)
    try:
        return await quota_alerts(db, settings, now)
    finally:
        await db.dispose()


async def consumer_usage(db: Database, settings: Settings, consumer_id: str, now: int) -> dict[str, Any] | None:
    """GET /consumers/{c}/usage's answer (without the consumer), or None without an active subscription."""
    async with db.connect() as conn:
        found = await usage_reads.active_reading(conn, consumer_id, now)
        if found is None:
            return None
        return (await usage_reads.answers(conn, settings, [found], now))[0]


async def subscribers(db: Database, now: int) -> dict[str, int]:
    """Plan id -> its subscriptions active now."""
    t = billing_tables.subscriptions
    async with db.connect() as conn:
        rows = await conn.execute(select(t.c.plan_id, func.count()).where(
            t.c.started_at <= now, (t.c.ends_at.is_(None)) | (t.c.ends_at > now)).group_by(t.c.plan_id))
        return {str(plan_id): int(count) for plan_id, count in rows}
