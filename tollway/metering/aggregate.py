"""Sums usage records into ledger rows: per UTC minute, then rolled up into hour, day, week and month."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from tollway.metering.records import UsageRecord, decode_line

log = logging.getLogger(__name__)

# (minute_start, consumer_id, service_id, route_id, status)
Key = tuple[int, str, str, str, int]


def month_start(epoch: int) -> int:
    """The start of the UTC calendar month holding `epoch` (seconds)."""
    day = datetime.fromtimestamp(epoch, UTC)
    return int(day.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp())


class UsageBatch:
    """The usage of one flush: totals per key and minute, and the names last seen for each id."""

    def __init__(self) -> None:
        self.records = 0
        self.bad_lines = 0
        # key -> [requests, request_bytes, response_bytes, latency_us_sum]
        self.minutes: dict[Key, list[int]] = {}
        # (kind, id) -> (name, custom_id, seen_ms)
        self.names: dict[tuple[str, str], tuple[str | None, str | None, int]] = {}

    def add(self, record: UsageRecord) -> None:
        """Count one call."""
        key = (record.ts_ms // 60_000 * 60, record.consumer_id, record.service_id, record.route_id,
               record.status)
        totals = self.minutes.get(key)
        if totals is None:
            self.minutes[key] = [1, record.request_bytes, record.response_bytes, record.latency_us]
        else:
            totals[0] += 1
            totals[1] += record.request_bytes
            totals[2] += record.response_bytes
            totals[3] += record.latency_us
        self.records += 1
        ts = record.ts_ms
        if record.consumer_id:
            self._seen("consumer", record.consumer_id, record.consumer_username, record.consumer_custom_id, ts)
        if record.service_id:
            self._seen("service", record.service_id, record.service_name, None, ts)
        if record.route_id:
            self._seen("route", record.route_id, record.route_name, None, ts)

    def _seen(self, kind: str, id_: str, name: str | None, custom_id: str | None, ts: int) -> None:
        known = self.names.get((kind, id_))
        if known is None or known[2] <= ts:
            self.names[(kind, id_)] = (name, custom_id, ts)

    def add_lines(self, lines: Iterable[bytes], source: str = "") -> None:
        """Count spool lines; empty lines are skipped, a line that does not parse is logged and skipped."""
        for line in lines:
            if not line:
                continue  # a writer's probe after a write failure (see tollway.metering.spool)
            try:
                record = decode_line(line)
            except ValueError as exc:  # UnicodeDecodeError is a ValueError too
                self.bad_lines += 1
                log.error("usage spool %s: skipping a malformed line: %s", source, exc)
                continue
            self.add(record)

    def usage_rows(self) -> list[dict[str, Any]]:
        """Ledger rows of every grain (minute, hour, day, week, month) for this batch."""
        grains: dict[tuple[str, int, str, str, str, int], list[int]] = {}
        months: dict[int, int] = {}
        for (minute, consumer, service, route, status), totals in self.minutes.items():
            day = minute - minute % 86_400
            month = months.get(day)
            if month is None:
                month = months[day] = month_start(day)
            week = day - (day // 86_400 + 3) % 7 * 86_400  # ISO weeks start on Monday (1970-01-01: Thursday)
            for grain, start in (("minute", minute), ("hour", minute - minute % 3600),
                                 ("day", day), ("week", week), ("month", month)):
                key = (grain, start, consumer, service, route, status)
                sums = grains.get(key)
                if sums is None:
                    grains[key] = list(totals)
                else:
                    for i in range(4):
                        sums[i] += totals[i]
        return [
            {"grain": grain, "bucket_start": start, "consumer_id": consumer, "service_id": service,
             "route_id": route, "status": status, "requests": sums[0], "request_bytes": sums[1],
             "response_bytes": sums[2], "latency_us_sum": sums[3]}
            for (grain, start, consumer, service, route, status), sums in grains.items()
        ]

    def name_rows(self) -> list[dict[str, Any]]:
        """billable_names rows for every id seen in this batch."""
        return [{"kind": kind, "id": id_, "name": name, "custom_id": custom_id, "seen_ms": seen}
                for (kind, id_), (name, custom_id, seen) in self.names.items()]
