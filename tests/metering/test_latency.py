"""Latency histograms: bucket edges, percentiles read from them, and the report rows that carry them."""

from __future__ import annotations

import asyncio

import pytest

from tests.metering.conftest import ROUTE, ROUTE2, finished_call, open_ledger
from tollway.config import Settings
from tollway.metering.flusher import Flusher
from tollway.metering.latency import bucket_of, bucket_upper_us, percentile
from tollway.metering.query import UsageQuery
from tollway.metering.report import UsageReport
from tollway.metering.spool import SpoolWriter
from tollway.metering.spool_line import encode_call


@pytest.mark.parametrize(("latency_us", "bucket", "upper"), [
    (0, 0, 1), (3, 3, 4), (4, 4, 5), (7, 7, 8), (8, 8, 10), (9, 8, 10), (10, 9, 12), (15, 11, 16),
    (16, 12, 20), (1000, 35, 1024), (1024, 36, 1280), (1279, 36, 1280), (1280, 37, 1536),
])
def test_buckets_are_four_to_an_octave(latency_us: int, bucket: int, upper: int) -> None:
    assert bucket_of(latency_us) == bucket and bucket_upper_us(bucket) == upper


def test_every_latency_lies_below_its_buckets_upper_edge_and_at_or_above_the_one_before() -> None:
    for latency in [*range(0, 5000), *range(5000, 10**8, 9973)]:
        bucket = bucket_of(latency)
        assert latency < bucket_upper_us(bucket)
        assert bucket == 0 or latency >= bucket_upper_us(bucket - 1)
        assert bucket_upper_us(bucket) <= max(4, latency * 1.25 + 1)  # at most 25% above


def test_percentiles_are_the_upper_edge_of_the_bucket_holding_that_call() -> None:
    # 100 calls: 90 of 1 ms (bucket 35: [896, 1024) us), 9 of 10 ms (bucket 48: [8192, 10240)), one of
    # 100 ms (bucket 62: [98304, 114688))
    counts = {bucket_of(1000): 90, bucket_of(10_000): 9, bucket_of(100_000): 1}
    assert percentile(counts, 0.5) == 1.024
    assert percentile(counts, 0.90) == 1.024      # the 90th call is the last of 1 ms
    assert percentile(counts, 0.95) == bucket_upper_us(bucket_of(10_000)) / 1000 == 10.24
    assert percentile(counts, 0.99) == 10.24      # the 99th call
    assert percentile(counts, 1.0) == bucket_upper_us(bucket_of(100_000)) / 1000 == 114.688
    assert percentile({}, 0.5) is None


def test_report_rows_by_route_carry_percentiles_of_exactly_their_calls(settings: Settings) -> None:
    start = 1_790_000_040.0  # a few seconds into a UTC minute
    with SpoolWriter(settings.spool_dir, "w1") as writer:
        spool = writer
        for i in range(100):
            call = finished_call(started_at=start + i * 0.01, route=dict(ROUTE))
            line = encode_call(call, now=call.started_at + (0.001 if i < 90 else 0.01 if i < 99 else 0.1))
            spool._map.write(line)  # type: ignore[union-attr]  # encode with a latency of our choosing
            spool._pos += len(line)
        call = finished_call(started_at=start, route=dict(ROUTE2))
        line = encode_call(call, now=start + 0.005)
        spool._map.write(line)  # type: ignore[union-attr]
        spool._pos += len(line)

    async def main() -> list[dict[str, object]]:
        db = await open_ledger(settings)
        try:
            assert await Flusher(db, settings, "n").flush_once() == 101
            query = UsageQuery.parse({"period": "day", "start": "1790000000", "group_by": "route"}, now=1_790_100_000)
            rows, _ = await (await UsageReport.prepare(db, settings, query)).page()
            by_consumer = UsageQuery.parse({"period": "day", "start": "1790000000"}, now=1_790_100_000)
            plain, _ = await (await UsageReport.prepare(db, settings, by_consumer)).page()
            assert all("latency_ms_p50" not in row for row in plain)  # histograms are not per consumer
            return rows
        finally:
            await db.dispose()

    rows = {row["route"]["name"]: row for row in asyncio.run(main())}  # type: ignore[index]
    assert rows["mock"]["requests"] == 100
    assert (rows["mock"]["latency_ms_p50"], rows["mock"]["latency_ms_p95"], rows["mock"]["latency_ms_p99"]) == (
        1.024, 10.24, 10.24)
    assert rows["other"]["latency_ms_p99"] == bucket_upper_us(bucket_of(5000)) / 1000 == 5.12
