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


def _count(totals: list[int], received: int, sent: int, latency: int, ts_ms: int) -> None:
    """One more line in a group: [lines, request bytes, response bytes, latency sum, latest ms]."""
    totals[0] += 1
    totals[1] += received
    totals[2] += sent
    totals[3] += latency
    if ts_ms > totals[4]:
        totals[4] = ts_ms


class UsageBatch:
    """The usage of one flush: totals per key and minute, and the names last seen for each id."""

    def __init__(self) -> None:
        self.records = 0
        self.bad_lines = 0
        # key -> [requests, request_bytes, response_bytes, latency_us_sum]
        self.minutes: dict[Key, list[int]] = {}
        # (kind, id) -> (name, custom_id, seen_ms)
        self.names: dict[tuple[str, str], tuple[str | None, str | None, int]] = {}

    def add(self, record: UsageRecord, count: int = 1, minute: int | None = None,
            sizes: tuple[int, int, int] | None = None) -> None:
        """Count one call; or `count` calls of one minute with summed `sizes` (request bytes,
        response bytes, latency), `record` being the latest of them."""
        if minute is None:
            minute = record.ts_ms // 60_000 * 60
        if sizes is None:
            sizes = (record.request_bytes, record.response_bytes, record.latency_us)
        key = (minute, record.consumer_id, record.service_id, record.route_id, record.status)
        totals = self.minutes.get(key)
        if totals is None:
            self.minutes[key] = [count, *sizes]
        else:
            totals[0] += count
            totals[1] += sizes[0]
            totals[2] += sizes[1]
            totals[3] += sizes[2]
        self.records += count
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
        """Count spool lines; empty lines are skipped, a line that does not parse is logged and skipped.

        The flusher's hot loop: a line is only split at its ends (format version and time at the
        front, the four numbers at the back) and summed under its raw middle, the consumer,
        service and route fields; each distinct middle is decoded once, by `_fold`.

        A worker writes runs of lines alike but for their numbers (one client's calls): a line
        whose time has 13 digits, as every time from 2001 to 2286 does, and whose middle and
        status are those of the lines before, in the same minute, is only split after them (once
        two lines in a row had them: alternating clients cost nothing more).
        """
        groups: dict[tuple[int, bytes, int], list[int]] = {}
        run_middle = b""  # b"<middle>\t<status>\t" of the last run of lines, summed into run_totals
        run_minute = -1
        run_totals: list[int] = []
        last_totals: list[int] = []  # the group of the line before
        for line in lines:
            if not line:
                continue  # a writer's probe after a write failure (see tollway.metering.spool)
            if run_middle and line.startswith(run_middle, 16) and line.startswith(b"1\t") and line[15] == 9:
                try:
                    ts_ms = int(line[2:15])
                    numbers = line[16 + len(run_middle):].split(b"\t")
                    if ts_ms // 60_000 * 60 == run_minute and len(numbers) == 3:
                        _count(run_totals, int(numbers[0]), int(numbers[1]), int(numbers[2]), ts_ms)
                        continue
                except ValueError:
                    pass  # counted as bad, with its reason, below
            try:
                head, status, request_bytes, response_bytes, latency_us = line.rsplit(b"\t", 4)
                version, ts, entities = head.split(b"\t", 2)
                if version != b"1":
                    raise ValueError(f"format version {version[:20]!r}")
                ts_ms = int(ts)
                key = (ts_ms // 60_000 * 60, entities, int(status))
                received = int(request_bytes)
                sent = int(response_bytes)
                latency = int(latency_us)
            except ValueError as exc:
                self._bad(source, line, exc)
                continue
            totals = groups.get(key)
            if totals is None:
                totals = groups[key] = [1, received, sent, latency, ts_ms]
            else:
                _count(totals, received, sent, latency, ts_ms)
            if totals is last_totals:  # the same group twice in a row: a run
                run_middle = b"%s\t%s\t" % (entities, status)
                run_minute = key[0]
                run_totals = totals
            last_totals = totals
        self._fold(groups, source)

    def _fold(self, groups: dict[tuple[int, bytes, int], list[int]], source: str) -> None:
        decoded: dict[bytes, UsageRecord | None] = {}  # the middle fields, decoded once
        for (minute, entities, status), (count, request_bytes, response_bytes, latency_us, ts_ms) in groups.items():
            if entities not in decoded:
                try:
                    decoded[entities] = decode_line(b"1\t0\t%s\t%d\t0\t0\t0" % (entities, status))
                except ValueError as exc:
                    decoded[entities] = None
                    log.error("usage spool %s: skipping malformed lines: bad consumer, service and route "
                              "fields %r (%s)", source, entities[:200], exc)
            record = decoded[entities]
            if record is None:
                self.bad_lines += count
                continue
            self.add(record._replace(ts_ms=ts_ms, status=status), count=count, minute=minute,
                     sizes=(request_bytes, response_bytes, latency_us))

    def _bad(self, source: str, line: bytes, exc: Exception) -> None:
        self.bad_lines += 1
        log.error("usage spool %s: skipping a malformed line: %s (%r)", source, exc, line[:200])

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
