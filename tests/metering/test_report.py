"""Usage reports on real SQLite and PostgreSQL: exact counts per period, filters, pages, CSV, names."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from sqlalchemy import text

from tests.metering.conftest import ALICE, BOB, ROUTE2, SERVICE, at, finished_call, with_ledger, write_calls
from tollway.config import Settings
from tollway.metering.flusher import Flusher
from tollway.metering.query import QueryError, UsageQuery
from tollway.metering.report import CSV_HEADER, UsageReport
from tollway.store.db import Database

NOW = at("2030-01-01T00:00:00+00:00")


@pytest.fixture
def long_retention(settings: Settings) -> Settings:
    """Keep minute and hour rows long enough for fixed dates in 2028 (queried 'now' = 2030)."""
    return settings.with_overrides(billable_minute_retention=100_000, billable_hour_retention=100_000)


async def rows_of(db: Database, settings: Settings, **params: Any) -> list[dict[str, Any]]:
    report = await UsageReport.prepare(db, settings, UsageQuery.parse(
        {k: str(v) for k, v in params.items()}, NOW))
    return [row async for row in report.rows()]


def counts(rows: list[dict[str, Any]]) -> list[tuple[str, int]]:
    """(period_start, requests) summed per period."""
    out: dict[str, int] = {}
    for row in rows:
        out[row["period_start"]] = out.get(row["period_start"], 0) + row["requests"]
    return list(out.items())


def flushed(settings: Settings, calls: list[finished_call]) -> Any:
    write_calls(settings, calls)

    def run(body: Any) -> Any:
        async def with_flush(db: Database) -> Any:
            await Flusher(db, settings, "node-1").flush_once()
            return await body(db)
        return with_ledger(settings, with_flush)

    return run


def test_month_year_and_leap_day_boundaries_are_exact(long_retention: Settings) -> None:
    instants = ["2028-01-31T23:59:59+00:00", "2028-02-01T00:00:00+00:00", "2028-02-29T12:00:00+00:00",
                "2028-02-29T23:59:59+00:00", "2028-03-01T00:00:00+00:00", "2028-12-31T23:59:59+00:00",
                "2029-01-01T00:00:00+00:00"]
    run = flushed(long_retention, [finished_call(started_at=at(i)) for i in instants])

    async def body(db: Database) -> None:
        s = long_retention
        assert counts(await rows_of(db, s, period="month", start="2028-01-01", end="2029-02-01")) == [
            ("2028-01-01T00:00:00+00:00", 1), ("2028-02-01T00:00:00+00:00", 3),
            ("2028-03-01T00:00:00+00:00", 1), ("2028-12-01T00:00:00+00:00", 1),
            ("2029-01-01T00:00:00+00:00", 1)]
        assert counts(await rows_of(db, s, period="year", start="2028-01-01", end="2030-01-01")) == [
            ("2028-01-01T00:00:00+00:00", 6), ("2029-01-01T00:00:00+00:00", 1)]
        assert counts(await rows_of(db, s, period="day", start="2028-02-29", end="2028-03-01")) == [
            ("2028-02-29T00:00:00+00:00", 2)]
        assert counts(await rows_of(db, s, period="week", start="2028-02-28", end="2028-03-06")) == [
            ("2028-02-28T00:00:00+00:00", 3)]
        # A range starting mid-month counts from its start only (read from day rows).
        assert counts(await rows_of(db, s, period="month", start="2028-02-15", end="2028-03-01")) == [
            ("2028-02-01T00:00:00+00:00", 2)]
        rows = await rows_of(db, s, period="month", start="2028-02-01", end="2028-03-01")
        assert rows[0]["period_end"] == "2028-03-01T00:00:00+00:00"

    run(body)


@pytest.mark.parametrize("tz, day, hours", [
    ("Europe/Berlin", "2028-03-26T00:00:00+01:00", 23),
    ("Europe/Berlin", "2028-10-29T00:00:00+02:00", 25),
    ("America/New_York", "2028-03-12T00:00:00-05:00", 23),
    ("America/New_York", "2028-11-05T00:00:00-04:00", 25),
])
def test_days_across_dst_count_every_hour_of_the_local_day(long_retention: Settings, tz: str, day: str,
                                                          hours: int) -> None:
    first = at(day) - 2 * 3600
    run = flushed(long_retention, [finished_call(started_at=first + h * 3600 + 1800) for h in range(30)])

    async def body(db: Database) -> None:
        rows = await rows_of(db, long_retention, period="day", tz=tz, start=str(int(at(day))),
                             end=str(int(at(day)) + 86_400 * 2))
        assert rows[0]["period_start"] == day
        assert rows[0]["requests"] == hours
        assert rows[1]["period_start"] == rows[0]["period_end"]

    run(body)


def test_filters_and_group_by(long_retention: Settings) -> None:
    t0 = at("2028-05-01T10:00:00+00:00")
    calls = ([finished_call(started_at=t0) for _ in range(3)]
             + [finished_call(started_at=t0, status=503) for _ in range(2)]
             + [finished_call(started_at=t0, consumer=BOB, route=dict(ROUTE2), status=404)]
             + [finished_call(started_at=t0, consumer=None, status=401) for _ in range(4)])
    run = flushed(long_retention, calls)

    async def body(db: Database) -> None:
        s = long_retention
        q = {"period": "month", "start": "2028-05-01", "end": "2028-06-01"}
        rows = await rows_of(db, s, **q)
        assert [(r["consumer"] and r["consumer"]["username"], r["route"]["name"], r["status"], r["requests"])
                for r in rows] == [(None, "mock", 401, 4), ("alice", "mock", 200, 3), ("alice", "mock", 503, 2),
                                   ("bob", "other", 404, 1)]
        assert rows[1]["consumer"] == ALICE
        assert rows[1]["service"] == {"id": SERVICE["id"], "name": "mock"}
        assert rows[1]["request_bytes"] == 300 and rows[1]["response_bytes"] == 3000
        assert sum(r["requests"] for r in await rows_of(db, s, **q, consumer="alice")) == 5
        assert sum(r["requests"] for r in await rows_of(db, s, **q, consumer=BOB["id"])) == 1
        assert sum(r["requests"] for r in await rows_of(db, s, **q, route="other")) == 1
        assert sum(r["requests"] for r in await rows_of(db, s, **q, service="mock")) == 10
        assert sum(r["requests"] for r in await rows_of(db, s, **q, status="4xx")) == 5
        assert sum(r["requests"] for r in await rows_of(db, s, **q, status="503")) == 2
        by_status = await rows_of(db, s, **q, group_by="status")
        assert [(r["consumer"], r["route"], r["status"], r["requests"]) for r in by_status] == [
            (None, None, 200, 3), (None, None, 401, 4), (None, None, 404, 1), (None, None, 503, 2)]
        assert [r["requests"] for r in await rows_of(db, s, **q, group_by="")] == [10]
        with pytest.raises(QueryError) as caught:
            await rows_of(db, s, **q, consumer="nobody", route="nowhere")
        assert caught.value.fields == {"consumer": "no consumer with id or name 'nobody'",
                                       "route": "no route with id or name 'nowhere'"}

    run(body)


def test_pages_follow_offsets_to_the_same_rows_in_the_same_order(long_retention: Settings) -> None:
    t0 = at("2028-05-01T10:00:00+00:00")
    run = flushed(long_retention, [finished_call(started_at=t0, status=200 + i) for i in range(7)])

    async def body(db: Database) -> None:
        params = {"period": "day", "start": "2028-05-01", "end": "2028-05-02", "size": "3"}
        seen: list[int] = []
        offset: str | None = ""
        while offset is not None:
            query = UsageQuery.parse({**params, "offset": offset} if offset else params, NOW)
            page, following = await (await UsageReport.prepare(db, long_retention, query)).page()
            assert len(page) <= 3
            seen += [row["status"] for row in page]
            from tollway.metering.query import encode_offset
            offset = encode_offset(following) if following is not None else None
        assert seen == [200 + i for i in range(7)]

    run(body)


def test_csv_streams_every_row_not_one_page(long_retention: Settings) -> None:
    t0 = at("2028-05-01T10:00:00+00:00")
    consumers = [{"id": f"c{i:05d}", "username": f"user,{i}", "custom_id": None} for i in range(2500)]
    run = flushed(long_retention, [finished_call(started_at=t0, consumer=c) for c in consumers])

    async def body(db: Database) -> None:
        query = UsageQuery.parse({"period": "month", "start": "2028-05-01", "end": "2028-06-01"}, NOW)
        report = await UsageReport.prepare(db, long_retention, query)
        data = b"".join([chunk async for chunk in report.csv_chunks()]).decode()
        rows = list(csv.reader(io.StringIO(data)))
        assert tuple(rows[0]) == CSV_HEADER
        assert len(rows) == 2501
        assert rows[1][:6] == ["month", "2028-05-01T00:00:00+00:00", "2028-06-01T00:00:00+00:00", "c00000",
                               "user,0", ""]
        assert sorted(r[4] for r in rows[1:]) == sorted(str(c["username"]) for c in consumers)

    run(body)


def test_a_deleted_consumer_keeps_its_last_known_name_and_live_names_win(long_retention: Settings) -> None:
    t0 = at("2028-05-01T10:00:00+00:00")
    run = flushed(long_retention, [finished_call(started_at=t0), finished_call(started_at=t0, consumer=BOB)])

    async def body(db: Database) -> None:
        async with db.engine.begin() as conn:  # the core table as the store defines it, Alice renamed
            await conn.execute(text("CREATE TABLE consumers (id CHAR(36) PRIMARY KEY, username TEXT, "
                                    "custom_id TEXT)"))
            await conn.execute(text("INSERT INTO consumers VALUES (:id, 'alice-renamed', NULL)"),
                               {"id": ALICE["id"]})
        rows = await rows_of(db, long_retention, period="month", start="2028-05-01", end="2028-06-01")
        assert [r["consumer"] for r in rows] == [
            {"id": ALICE["id"], "username": "alice-renamed", "custom_id": None},
            {"id": BOB["id"], "username": "bob", "custom_id": None}]  # deleted: last known name
        bob = await rows_of(db, long_retention, period="month", start="2028-05-01", end="2028-06-01",
                            consumer="bob")
        assert [r["consumer"]["id"] for r in bob] == [BOB["id"]]

    run(body)


@pytest.mark.parametrize("group_by", ["consumer,service,route,status", "consumer"])
def test_weeks_cut_by_the_range_subtract_the_days_outside_it_exactly(long_retention: Settings,
                                                                    group_by: str) -> None:
    # 2028-02-01 is a Tuesday: its week began on Monday 2028-01-31, which lies outside the range.
    calls = ([finished_call(started_at=at("2028-01-31T12:00:00+00:00")) for _ in range(4)]
             + [finished_call(started_at=at("2028-02-01T00:00:00+00:00")) for _ in range(3)]
             + [finished_call(started_at=at("2028-02-08T23:59:59+00:00"), consumer=BOB) for _ in range(2)]
             + [finished_call(started_at=at("2028-02-29T23:00:00+00:00")) for _ in range(5)]
             + [finished_call(started_at=at("2028-03-01T00:00:00+00:00")) for _ in range(6)]
             + [finished_call(started_at=at("2028-01-31T12:00:00+00:00"), consumer=BOB)])  # nothing inside for bob

    async def body(db: Database) -> None:
        rows = await rows_of(db, long_retention, period="week", start="2028-02-01", end="2028-03-01",
                             group_by=group_by)
        assert [(r["period_start"], r["consumer"]["username"], r["requests"]) for r in rows] == [
            ("2028-01-31T00:00:00+00:00", "alice", 3),
            ("2028-02-07T00:00:00+00:00", "bob", 2),
            ("2028-02-28T00:00:00+00:00", "alice", 5),
        ]
        assert rows[0]["request_bytes"] == 300 and rows[0]["response_bytes"] == 3000

    flushed(long_retention, calls)(body)


def test_consumer_dash_selects_the_calls_without_a_consumer(long_retention: Settings) -> None:
    t0 = at("2028-05-02T10:00:00+00:00")
    calls = ([finished_call(started_at=t0, consumer=None, status=401) for _ in range(4)]
             + [finished_call(started_at=t0) for _ in range(3)])

    async def body(db: Database) -> None:
        rows = await rows_of(db, long_retention, period="month", start="2028-05-01", consumer="-")
        assert [(r["consumer"], r["status"], r["requests"]) for r in rows] == [(None, 401, 4)]
        rows = await rows_of(db, long_retention, period="month", start="2028-05-01", consumer="alice")
        assert [(r["consumer"]["username"], r["requests"]) for r in rows] == [("alice", 3)]

    flushed(long_retention, calls)(body)


@pytest.mark.parametrize(("params", "field", "message"), [
    ({"start": "1e18"}, "start", "epoch seconds from 0"),
    ({"end": "1e308"}, "end", "epoch seconds from 0"),
    ({"start": "-5"}, "start", "epoch seconds from 0"),
    ({"start": "9999-12-31T23:00:00-05:00"}, "start", "from 1970 to the year 9999"),
    ({"start": "0001-01-01"}, "start", "from 1970 to the year 9999"),
    ({"consumer": "\x00"}, "consumer", "NUL"),
    ({"route": "a\x00b"}, "route", "NUL"),
    ({"service": "x" * 600}, "service", "at most 512"),
])
def test_out_of_range_instants_and_nul_filters_are_clear_errors(params: dict[str, str], field: str,
                                                                 message: str) -> None:
    with pytest.raises(QueryError) as info:
        UsageQuery.parse(params, now=1_800_000_000)
    assert message in info.value.fields[field]
