"""Latency percentiles for report rows, from the latency histograms (tollway/metering/latency.py).

Histograms are kept per service and route, so rows grouped by service and/or route (not by
consumer or status, and with neither filtered) get `latency_ms_p50`, `_p95` and `_p99`: for each
row's period and keys, the upper edge of the bucket holding that percentile's call. The
histograms are read with the report's own plan (grain, periods, and the finer rows subtracted at
the range's edges), so the calls they count are exactly the row's `requests`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from tollway.metering.latency import merge, percentile
from tollway.metering.periods import bucket_floor
from tollway.metering.plan import Plan
from tollway.metering.query import UsageQuery
from tollway.metering.tables import latency

PERCENTILES = (("latency_ms_p50", 0.5), ("latency_ms_p95", 0.95), ("latency_ms_p99", 0.99))
_ID_COLUMN = {"service": latency.c.service_id, "route": latency.c.route_id}


def applies(query: UsageQuery) -> bool:
    """Whether rows of this report can carry percentiles (see the module docstring)."""
    return (bool(query.group_by) and set(query.group_by) <= {"service", "route"}
            and query.consumer is None and query.status is None)


def _statement(query: UsageQuery, plan: Plan, filters: dict[str, list[str]], lo: int, hi: int) -> Select[Any]:
    """Calls per (period, service and/or route, bucket) for the periods starting in [lo, hi)."""
    dimensions = [_ID_COLUMN[kind] for kind in ("service", "route") if kind in query.group_by]
    conditions = [_ID_COLUMN[kind].in_(ids) for kind, ids in filters.items() if kind in _ID_COLUMN]
    upper = hi if plan.hi is None else min(hi, plan.hi)
    mapped: Any = select(plan.period_of(latency.c.bucket_start).label("pstart"), *dimensions, latency.c.bucket,
                         latency.c.calls).where(latency.c.grain == plan.grain,
                                                # a coarser bucket than the period (read with
                                                # `minus`) starts before the period it maps to
                                                latency.c.bucket_start >= max(bucket_floor(lo, plan.grain), plan.lo),
                                                latency.c.bucket_start < upper, *conditions)
    if plan.minus_grain is not None:
        outside = or_(*(and_(latency.c.bucket_start >= a, latency.c.bucket_start < b) for a, b in plan.minus))
        mapped = mapped.union_all(select(plan.period_of(latency.c.bucket_start, plan.minus_grain).label("pstart"),
                                         *dimensions, latency.c.bucket, -latency.c.calls)
                                  .where(latency.c.grain == plan.minus_grain, outside, *conditions))
    flat = mapped.subquery("mapped")
    keys = [flat.c.pstart, *(flat.c[d.name] for d in dimensions), flat.c.bucket]
    return select(*keys, func.sum(flat.c.calls)).group_by(*keys)


async def attach(conn: AsyncConnection, query: UsageQuery, plan: Plan, filters: dict[str, list[str]],
                 rows: Sequence[dict[str, Any]], starts: Sequence[int]) -> None:
    """Add the percentiles to `rows` (a page; `starts` their periods' starts) when the report's
    grouping allows."""
    if not rows or not applies(query):
        return
    lo, hi = min(starts), plan.ends[max(starts)]
    histograms: dict[tuple[Any, ...], dict[int, int]] = {}
    for *key, bucket, calls in await conn.execute(_statement(query, plan, filters, lo, hi)):
        merge(histograms.setdefault(tuple(key), {}), [(int(bucket), int(calls))])
    for row, start in zip(rows, starts, strict=True):
        key = (start, *((row[kind] or {}).get("id") or "" for kind in ("service", "route") if kind in query.group_by))
        counts = {bucket: calls for bucket, calls in histograms.get(key, {}).items() if calls > 0}
        for name, fraction in PERCENTILES:
            row[name] = percentile(counts, fraction)


async def over_range(conn: AsyncConnection, query: UsageQuery, plan: Plan,
                     filters: dict[str, list[str]]) -> dict[tuple[Any, ...], dict[int, int]]:
    """The histogram of each key (service and/or route ids, as `query.group_by` has them) over the
    report's whole range, every period summed: what a percentile over the range is read from."""
    if not applies(query) or not plan.starts:
        return {}
    histograms: dict[tuple[Any, ...], dict[int, int]] = {}
    lo, hi = plan.starts[0], plan.ends[plan.starts[-1]]
    for _start, *key, bucket, calls in await conn.execute(_statement(query, plan, filters, lo, hi)):
        merge(histograms.setdefault(tuple(key), {}), [(int(bucket), int(calls))])
    return {key: {bucket: calls for bucket, calls in counts.items() if calls > 0}
            for key, counts in histograms.items()}
