"""Week rows (ISO weeks from Monday, UTC) in the ledger, rebuilt from the day rows.

The flusher writes week rows from now on, in the same transaction as the other grains; this
rebuilds every week row from the day rows (kept forever), so it is exact and may run again.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.engine import Connection

from tollway.metering.tables import LEDGER_TABLES, metadata


def up(conn: Connection) -> None:
    metadata.create_all(conn, tables=LEDGER_TABLES, checkfirst=True)
    conn.execute(text("DELETE FROM billable_usage WHERE grain = 'week'"))
    # 1970-01-01 was a Thursday: a day's Monday is 3 days back modulo 7 (integer division on both databases).
    week = "bucket_start - ((bucket_start / 86400 + 3) % 7) * 86400"
    conn.execute(text(
        "INSERT INTO billable_usage (grain, bucket_start, consumer_id, service_id, route_id, status, requests, "
        "request_bytes, response_bytes, latency_us_sum) "
        f"SELECT 'week', {week}, consumer_id, service_id, route_id, status, SUM(requests), SUM(request_bytes), "
        "SUM(response_bytes), SUM(latency_us_sum) FROM billable_usage WHERE grain = 'day' "
        f"GROUP BY {week}, consumer_id, service_id, route_id, status"))
