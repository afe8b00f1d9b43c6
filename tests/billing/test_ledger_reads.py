"""Meter figures read from the ledger: filters, spans that share a statement, and a group of consumers
too large to name answered by one pass over everyone's rows, with the same figures."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from tests.metering.conftest import open_ledger
from tollway.billing.ledger_usage import NAMED, Figure, read_figures, read_many
from tollway.billing.meters import Meter, parse_status
from tollway.config import Settings
from tollway.metering.ledger import add_usage
from tollway.metering.periods import bucket_floor

SERVICE, OTHER = "s" * 36, "o" * 36


def utc(*fields: int) -> int:
    return int(datetime(*fields, tzinfo=UTC).timestamp())


def rows(consumer: str, instant: int, requests: int, status: int = 200, service: str = SERVICE) -> list[dict]:
    """What the flusher writes for `requests` calls at `instant`: one row per grain."""
    return [{"grain": grain, "bucket_start": bucket_floor(instant, grain), "consumer_id": consumer,
             "service_id": service, "route_id": "", "status": status, "requests": requests,
             "request_bytes": 10 * requests, "response_bytes": 100 * requests, "latency_us_sum": 0}
            for grain in ("minute", "hour", "day", "week", "month")]


CALLS = Meter("calls")
OK_ON_SERVICE = Meter("ok", service_id=SERVICE, statuses=(parse_status("2xx"),))
BYTES_OUT = Meter("out", aggregation="sum", field="response_bytes")
NOW = utc(2027, 3, 20, 12)


def test_figures_follow_meter_filters_and_spans(settings: Settings) -> None:
    settings = settings.with_overrides(billable_minute_retention=100_000, billable_hour_retention=100_000)

    async def main() -> None:
        db = await open_ledger(settings)
        try:
            async with db.engine.begin() as conn:
                await add_usage(conn, [*rows("a", utc(2027, 3, 1, 0, 0), 3),
                                       *rows("a", utc(2027, 3, 10, 8, 30), 4, status=500),
                                       *rows("a", utc(2027, 3, 19, 23, 59), 5, service=OTHER),
                                       *rows("a", utc(2027, 2, 28, 23, 59), 100),   # before the spans
                                       *rows("b", utc(2027, 3, 20, 11, 59), 7)])
            month = (utc(2027, 3, 1), NOW)
            day = (utc(2027, 3, 20), NOW)
            figures = [Figure(CALLS, *month), Figure(OK_ON_SERVICE, *month), Figure(BYTES_OUT, *month),
                       Figure(CALLS, *day), Figure(CALLS, NOW, NOW)]
            async with db.connect() as conn:
                named = await read_figures(conn, settings, ["a", "b", "c"], figures, NOW)
                crowd = [f"consumer-{i}" for i in range(NAMED)] + ["a", "b"]
                everyone = await read_figures(conn, settings, crowd, figures, NOW)
                grouped = await read_many(conn, settings, [("a", figures[:2]), ("b", figures[3:4])], NOW)
            assert named == {"a": [12, 3, 1200, 0, 0], "b": [7, 7, 700, 7, 0], "c": [0, 0, 0, 0, 0]}
            assert everyone["a"] == named["a"] and everyone["b"] == named["b"] and everyone["consumer-0"] == [0] * 5
            assert len(everyone) == NAMED + 2
            assert grouped == {"a": [12, 3], "b": [7]}
        finally:
            await db.dispose()

    asyncio.run(main())
