"""The usage ledger, as SQLAlchemy Core tables (the same definitions serve SQLite and PostgreSQL).

The tables keep the names they had when the ledger was the billable plugin's.

  billable_usage          one row per (grain, bucket_start, consumer, service, route, status):
                          totals for that UTC minute, hour, day, ISO week (from
                          Monday) or month. Storage grows with
                          consumers x routes x buckets, never with requests.
  billable_usage_routes   the same totals without the consumer: one row per (grain, bucket_start,
                          service, route, status), each the sum of billable_usage's rows of that
                          key over every consumer. Written by the flusher in the transaction that
                          writes billable_usage, so it stays exact; reports that neither group nor
                          filter by consumer read it instead of every consumer's rows.
  billable_names          the last known name of every consumer, service and route seen metered,
                          so a report still names an entity after it was deleted.
  billable_spool_offsets  how far the flusher of each node has counted each spool file.
  billable_latency        calls per latency bucket (tollway/metering/latency.py) per (grain,
                          bucket_start, service, route): the tail that an average hides.

"No consumer" (or service) is stored as '' rather than NULL so that the unique key holds on both
databases. Times are integer epoch seconds (bucket starts) or milliseconds (last seen).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, MetaData, String, Table

metadata = MetaData()

GRAINS = ("minute", "hour", "day", "week", "month")

usage = Table(
    "billable_usage", metadata,
    Column("grain", String(6), primary_key=True),
    Column("bucket_start", BigInteger, primary_key=True),
    Column("consumer_id", String(36), primary_key=True),
    Column("service_id", String(36), primary_key=True),
    Column("route_id", String(36), primary_key=True),
    Column("status", Integer, primary_key=True),
    Column("requests", BigInteger, nullable=False),
    Column("request_bytes", BigInteger, nullable=False),
    Column("response_bytes", BigInteger, nullable=False),
    Column("latency_us_sum", BigInteger, nullable=False),
    Index("billable_usage_consumer_idx", "consumer_id", "grain", "bucket_start"),
    sqlite_with_rowid=False,
)

rollup = Table(
    "billable_usage_routes", metadata,
    Column("grain", String(6), primary_key=True),
    Column("bucket_start", BigInteger, primary_key=True),
    Column("service_id", String(36), primary_key=True),
    Column("route_id", String(36), primary_key=True),
    Column("status", Integer, primary_key=True),
    Column("requests", BigInteger, nullable=False),
    Column("request_bytes", BigInteger, nullable=False),
    Column("response_bytes", BigInteger, nullable=False),
    Column("latency_us_sum", BigInteger, nullable=False),
    sqlite_with_rowid=False,
)

names = Table(
    "billable_names", metadata,
    Column("kind", String(8), primary_key=True),         # consumer, service or route
    Column("id", String(36), primary_key=True),
    Column("name", String(512)),                          # a consumer's username
    Column("custom_id", String(512)),
    Column("seen_ms", BigInteger, nullable=False),
    sqlite_with_rowid=False,
)

spool_offsets = Table(
    "billable_spool_offsets", metadata,
    Column("node_id", String(64), primary_key=True),
    Column("file", String(255), primary_key=True),
    Column("position", BigInteger, nullable=False),
)

latency = Table(
    "billable_latency", metadata,
    Column("grain", String(6), primary_key=True),
    Column("bucket_start", BigInteger, primary_key=True),
    Column("service_id", String(36), primary_key=True),
    Column("route_id", String(36), primary_key=True),
    Column("bucket", Integer, primary_key=True),
    Column("calls", BigInteger, nullable=False),
    sqlite_with_rowid=False,
)

# The rollup's rows as the ledger's sums over consumers (migration 003 and the benchmarks' loaders).
ROLLUP_FROM_LEDGER = (
    "INSERT INTO billable_usage_routes (grain, bucket_start, service_id, route_id, status, requests, "
    "request_bytes, response_bytes, latency_us_sum) "
    "SELECT grain, bucket_start, service_id, route_id, status, SUM(requests), SUM(request_bytes), "
    "SUM(response_bytes), SUM(latency_us_sum) FROM billable_usage "
    "GROUP BY grain, bucket_start, service_id, route_id, status")

LEDGER_TABLES = [usage, rollup, names, spool_offsets, latency]
