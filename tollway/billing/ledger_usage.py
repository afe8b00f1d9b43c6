"""Meter figures read from the usage ledger, exactly, for any span of time.

The ledger holds UTC minute, hour, day, week and month buckets (tollway.metering.tables). A span
[lo, hi) on whole minutes is covered by whole buckets, coarsest first (`cover`): a month in UTC
reads one month row per key, a Berlin month one hour row, then day and week rows, then one hour
row. Nothing straddles an edge, so sums are exact. Minute and hour rows are kept only for
billable_minute_retention / billable_hour_retention days: a span that needs older ones is refused
(RetentionExceeded) rather than answered wrong; that happens only to a zone whose offset is not a
whole hour (Asia/Kolkata) for a span starting more than that many days ago.

`read_figures` answers many (meter, span) figures of many consumers in one statement per chunk
of consumers: one SUM(CASE ...) column per figure, grouped by consumer, through the ledger's
(consumer_id, grain, bucket_start) index. Consumers whose figures share spans (calendar periods in
one zone) share statements: `read_many` groups them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, case, func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import ColumnElement

from tollway.billing.errors import BillingError
from tollway.billing.meters import Meter
from tollway.config import Settings
from tollway.metering.periods import bucket_ceil, bucket_floor
from tollway.metering.tables import usage

GRAINS = ("month", "week", "day", "hour", "minute")  # coarsest first
CHUNK = 500  # consumers per statement
_RETENTION = {"minute": "billable_minute_retention", "hour": "billable_hour_retention"}


class RetentionExceeded(BillingError):
    """A span needs ledger rows older than their retention."""


@dataclass(frozen=True)
class Figure:
    """One number to read: `meter` over [lo, hi) (epoch seconds, whole minutes)."""

    meter: Meter
    lo: int
    hi: int


def minute_end(instant: int) -> int:
    """The end of the minute holding `instant`: usage "so far" includes the minute in progress."""
    return instant - instant % 60 + 60


def cover(lo: int, hi: int) -> list[tuple[str, int, int]]:
    """[lo, hi) as (grain, first bucket start, end) runs of whole UTC buckets, coarsest that fit."""
    if lo % 60 or hi % 60:
        raise ValueError("a span is read in whole minutes")
    runs: list[tuple[str, int, int]] = []
    at = lo
    while at < hi:
        for grain in GRAINS:
            end = bucket_ceil(at + 1, grain)
            if bucket_floor(at, grain) == at and end <= hi:
                break
        if runs and runs[-1][0] == grain and runs[-1][2] == at:
            runs[-1] = (grain, runs[-1][1], end)
        else:
            runs.append((grain, at, end))
        at = end
    return runs


def check_retention(runs: Sequence[tuple[str, int, int]], settings: Settings, now: int) -> None:
    for grain, start, _end in runs:
        if grain in _RETENTION:
            days = getattr(settings, _RETENTION[grain])
            if start < now - days * 86_400:
                raise RetentionExceeded(
                    f"usage from {start} (epoch seconds) needs per-{grain} ledger rows, which are kept for {days} "
                    f"days ({_RETENTION[grain]}); raise it to cover the longest billing period")


def _span(runs: Sequence[tuple[str, int, int]]) -> ColumnElement[bool]:
    return or_(*(and_(usage.c.grain == grain, usage.c.bucket_start >= start, usage.c.bucket_start < end)
                 for grain, start, end in runs))


def _filter(meter: Meter) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if meter.service_id is not None:
        conditions.append(usage.c.service_id == meter.service_id)
    if meter.route_id is not None:
        conditions.append(usage.c.route_id == meter.route_id)
    if meter.statuses is not None:
        conditions.append(or_(*(and_(usage.c.status >= s.lo, usage.c.status < s.hi) for s in meter.statuses)))
    return conditions


async def read_figures(conn: AsyncConnection, settings: Settings, consumer_ids: Sequence[str],
                       figures: Sequence[Figure], now: int) -> dict[str, list[int]]:
    """Each consumer's figures, in `figures`' order (0 where the ledger has nothing); an empty span is 0."""
    result = {consumer: [0] * len(figures) for consumer in consumer_ids}
    spans = {(figure.lo, figure.hi): cover(figure.lo, figure.hi) for figure in figures if figure.hi > figure.lo}
    for runs in spans.values():
        check_retention(runs, settings, now)
    columns: list[tuple[int, Any]] = []
    for index, figure in enumerate(figures):
        figure_runs = spans.get((figure.lo, figure.hi))
        if figure_runs:
            condition = and_(_span(figure_runs), *_filter(figure.meter))
            columns.append((index, func.sum(case((condition, usage.c[figure.meter.column]), else_=literal(0)))))
    if not columns or not consumer_ids:
        return result
    every_span = or_(*(_span(runs) for runs in spans.values() if runs))
    for start in range(0, len(consumer_ids), CHUNK):
        chunk = list(consumer_ids[start:start + CHUNK])
        statement = select(usage.c.consumer_id, *(column for _, column in columns)) \
            .where(usage.c.consumer_id.in_(chunk), every_span).group_by(usage.c.consumer_id)
        for row in await conn.execute(statement):
            figures_of = result[row[0]]
            for position, (index, _column) in enumerate(columns, 1):
                figures_of[index] = int(row[position] or 0)
    return result


async def read_many(conn: AsyncConnection, settings: Settings, wanted: Sequence[tuple[str, Sequence[Figure]]],
                    now: int) -> dict[str, list[int]]:
    """Figures for many consumers, each with its own list: consumers asking for the same figures share
    statements (subscriptions on one plan with calendar periods in one zone)."""
    groups: dict[tuple[Figure, ...], list[str]] = {}
    for consumer, figures in wanted:
        groups.setdefault(tuple(figures), []).append(consumer)
    result: dict[str, list[int]] = {}
    for figures, consumers in groups.items():
        result.update(await read_figures(conn, settings, consumers, figures, now))
    return result
