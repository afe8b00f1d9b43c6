"""The overview reads a span's settled days once and the rest at every refresh: the two parts add up
to exactly what one read of the whole span (and /billable) says."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import insert

from tests.admin.conftest import _bootstrap
from tollway.config import Settings
from tollway.dashboard import figures
from tollway.dashboard.overview import Overview, settled_until
from tollway.metering.latency import bucket_of
from tollway.metering.ledger import add_usage
from tollway.metering.periods import bucket_floor
from tollway.metering.query import UsageQuery
from tollway.metering.report import UsageReport
from tollway.metering.tables import latency
from tollway.store.db import Database

NOW = 1_796_000_000 + 5 * 3600 + 17 * 60 + 5   # a morning, UTC
DAY = 86_400


def _ledger() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Three consumers on two routes, some calls every day of the last 35, in every grain."""
    rows: dict[tuple[Any, ...], int] = {}
    histograms: dict[tuple[Any, ...], int] = {}
    for day in range(35):
        start = bucket_floor(NOW, "day") - day * DAY
        for c, consumer in enumerate(("a" * 36, "b" * 36, "c" * 36)):
            for r, route in enumerate(("r" * 36, "s" * 36)):
                for status, count in ((200, 1 + (day * 3 + c + r) % 7), (503, (day + c) % 2)):
                    if not count:
                        continue
                    moment = start + 3600 * (c + 1) if day else NOW - NOW % 60 - 600  # today: 10 min ago
                    for grain in ("minute", "hour", "day", "week", "month"):
                        if grain == "minute" and day:
                            continue
                        key = (grain, bucket_floor(moment, grain), consumer, "", route, status)
                        rows[key] = rows.get(key, 0) + count
                        bucket = bucket_of(1000 * (r + 1) + status)
                        lkey = (grain, bucket_floor(moment, grain), "", route, bucket)
                        histograms[lkey] = histograms.get(lkey, 0) + count
    names = ("grain", "bucket_start", "consumer_id", "service_id", "route_id", "status")
    return ([{**dict(zip(names, key, strict=True)), "requests": n, "request_bytes": n, "response_bytes": n,
              "latency_us_sum": n * 1000} for key, n in rows.items()],
            [{**dict(zip(("grain", "bucket_start", "service_id", "route_id", "bucket"), key, strict=True)),
              "calls": n} for key, n in histograms.items()])


async def _check(settings: Settings) -> None:
    await _bootstrap(settings)
    db = Database.from_settings(settings)
    try:
        rows, counts = _ledger()
        async with db.begin() as conn:
            await add_usage(conn, rows)  # the ledger and its rollup, as the flusher writes them
            await conn.execute(insert(latency), counts)
        overview = Overview(db, settings)
        for name in ("month", "day", "hour"):
            span = figures.SPANS[name]
            start = figures.span_start(span, NOW)
            whole_traffic = await figures.traffic(db, settings, span, NOW)
            whole = await figures.totals(db, settings, start, None, NOW)
            for _ in range(2):  # the second time from the settled part kept
                traffic, totals = await overview.figures(span, NOW)
                assert (traffic.times, traffic.calls, traffic.total) == \
                    (whole_traffic.times, whole_traffic.calls, whole_traffic.total)
                assert traffic.billable == whole_traffic.billable
                assert totals.consumers == whole.consumers and totals.routes == whole.routes
                assert totals.histograms == whole.histograms
                assert totals.top_routes() == whole.top_routes() and totals.latency() == whole.latency()
            assert whole_traffic.total > 0 and whole_traffic.by_class.get("5xx")
        assert settled_until(figures.span_start(figures.SPANS["month"], NOW), NOW) == bucket_floor(NOW, "day")
        await _week_percentiles(db, settings)
        assert {key[0] for key in overview.settled} == {"month", "day"}  # the hour has no settled part
    finally:
        await db.dispose()


async def _week_percentiles(db: Database, settings: Settings) -> None:
    """/billable's percentiles of a week from a mid-week day: the week bucket (from Monday) is read
    less the days before the start, for the histograms as for the counts."""
    end = bucket_floor(NOW, "week")
    start = end - 5 * DAY  # last week's Wednesday
    report = await UsageReport.prepare(db, settings, UsageQuery.parse(
        {"period": "week", "start": str(start), "end": str(end), "group_by": "route"}, NOW))
    assert report.plan.grain == "week" and report.plan.minus
    rows, _ = await report.page()
    by_day = await figures.totals(db, settings, start, end, NOW, period="day")
    assert {row["route"]["id"]: row["requests"] for row in rows} == {key: calls for key, (_, calls)
                                                                      in by_day.routes.items()}
    expected = {item.id: (item.p50, item.p95, item.p99) for item in by_day.top_routes()}
    assert {row["route"]["id"]: (row["latency_ms_p50"], row["latency_ms_p95"], row["latency_ms_p99"])
            for row in rows} == expected


def test_the_settled_and_live_parts_add_up_to_the_whole_span(settings: Settings) -> None:
    asyncio.run(_check(settings))
