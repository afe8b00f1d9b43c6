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


def _count_run(totals: list[int], count: int, received: int, sent: int, latency: int, latest: int) -> None:
    """`count` more lines of `received` and `sent` bytes each in a group, with their latency sum and latest ms."""
    totals[0] += count
    totals[1] += count * received
    totals[2] += count * sent
    totals[3] += latency
    if latest > totals[4]:
        totals[4] = latest


class UsageBatch:
    """The usage of one flush: totals per key and minute, and the names last seen for each id.

    Spool lines are summed raw (`add_lines`) and decoded into those totals when the rows are
    asked for: once per group and batch, however many lines and chunks it spans.
    """

    def __init__(self) -> None:
        self.records = 0
        self.bad_lines = 0
        # key -> [requests, request_bytes, response_bytes, latency_us_sum]
        self._minutes: dict[Key, list[int]] = {}
        # (kind, id) -> (name, custom_id, seen_ms)
        self._names: dict[tuple[str, str], tuple[str | None, str | None, int]] = {}
        # Lines summed but not decoded yet: (minute, raw middle, status) -> [lines, request
        # bytes, response bytes, latency sum, latest ms]
        self._groups: dict[tuple[int, bytes, int], list[int]] = {}
        self._decoded: dict[bytes, UsageRecord | None] = {}  # raw middle -> decoded (None: malformed)

    @property
    def minutes(self) -> dict[Key, list[int]]:
        """[requests, request bytes, response bytes, latency sum] per (minute, consumer, service, route, status)."""
        self._fold()
        return self._minutes

    @property
    def names(self) -> dict[tuple[str, str], tuple[str | None, str | None, int]]:
        """(name, custom_id, seen ms) per (kind, id): the latest seen in the batch."""
        self._fold()
        return self._names

    def add(self, record: UsageRecord, count: int = 1, minute: int | None = None,
            sizes: tuple[int, int, int] | None = None) -> None:
        """Count one call; or `count` calls of one minute with summed `sizes` (request bytes,
        response bytes, latency), `record` being the latest of them."""
        self.records += count
        self._add(record, count, minute, sizes)

    def _add(self, record: UsageRecord, count: int, minute: int | None, sizes: tuple[int, int, int] | None) -> None:
        if minute is None:
            minute = record.ts_ms // 60_000 * 60
        if sizes is None:
            sizes = (record.request_bytes, record.response_bytes, record.latency_us)
        key = (minute, record.consumer_id, record.service_id, record.route_id, record.status)
        totals = self._minutes.get(key)
        if totals is None:
            self._minutes[key] = [count, *sizes]
        else:
            totals[0] += count
            totals[1] += sizes[0]
            totals[2] += sizes[1]
            totals[3] += sizes[2]
        ts = record.ts_ms
        if record.consumer_id:
            self._seen("consumer", record.consumer_id, record.consumer_username, record.consumer_custom_id, ts)
        if record.service_id:
            self._seen("service", record.service_id, record.service_name, None, ts)
        if record.route_id:
            self._seen("route", record.route_id, record.route_name, None, ts)

    def _seen(self, kind: str, id_: str, name: str | None, custom_id: str | None, ts: int) -> None:
        known = self._names.get((kind, id_))
        if known is None or known[2] <= ts:
            self._names[(kind, id_)] = (name, custom_id, ts)

    def add_lines(self, lines: Iterable[bytes], source: str = "") -> None:
        """Count spool lines; empty lines are skipped, a line that does not parse is logged and skipped.

        The flusher's hot loop: a line is only split at its ends (format version and time at the
        front, the four numbers at the back) and summed under its raw middle, the consumer,
        service and route fields; each distinct middle is decoded once per batch.

        A worker writes runs of lines alike but for their time and latency (one client's calls).
        Once two lines in a row fell in one group, a line whose time has 13 digits (as every time
        from 2001 to 2286 does) and whose middle, status and byte counts are byte for byte those
        of the run, in the run's minute, is only compared, and has its latency read (and its time,
        when it differs from the line before's). Alternating clients cost nothing more.
        """
        groups = self._groups
        same = b""         # b"<middle>\t<status>\t<request bytes>\t<response bytes>\t" of the run, or b""
        same_end = 0       # 16 + len(same): where a run line's latency begins
        minute_ms = 0      # the run's minute: its lines' times are in [minute_ms, minute_ms + 60_000)
        time_text = b""    # the time field of the run's line before
        received = sent = 0
        count = latency = latest = 0  # the run's lines not yet added to run_totals
        run_totals: list[int] = []
        last_totals: list[int] = []   # the group of the line before
        for line in lines:
            # A tab at either end of a number would be a field of its own: int() would skip it.
            if (same and len(line) > same_end and line[0] == 49 and line[1] == 9 and line[15] == 9
                    and line[16:same_end] == same and line[same_end] != 9 and line[-1] != 9):
                try:
                    line_latency = int(line[same_end:])
                    text = line[2:15]
                    if text != time_text:
                        ts_ms = int(text)
                        if ts_ms < minute_ms or ts_ms - minute_ms >= 60_000 or text[0] == 9 or text[12] == 9:
                            raise ValueError("not in the run")
                        time_text = text
                        if ts_ms > latest:
                            latest = ts_ms
                    count += 1
                    latency += line_latency
                    continue
                except ValueError:
                    pass  # another minute, or a bad number: counted below, with its reason
            if not line:
                continue  # a writer's probe after a write failure (see tollway.metering.spool)
            try:
                head, status, request_bytes, response_bytes, latency_us = line.rsplit(b"\t", 4)
                version, ts, entities = head.split(b"\t", 2)
                if version != b"1":
                    raise ValueError(f"format version {version[:20]!r}")
                ts_ms = int(ts)
                key = (ts_ms // 60_000 * 60, entities, int(status))
                line_received = int(request_bytes)
                line_sent = int(response_bytes)
                line_latency = int(latency_us)
            except ValueError as exc:
                self._bad(source, line, exc)
                continue
            totals = groups.get(key)
            if totals is None:
                if not self._decodes(entities, source):
                    self.bad_lines += 1
                    continue
                totals = groups[key] = [1, line_received, line_sent, line_latency, ts_ms]
            else:
                _count(totals, line_received, line_sent, line_latency, ts_ms)
            self.records += 1
            if totals is last_totals and len(ts) == 13:  # the same group twice in a row: a run
                if count:
                    _count_run(run_totals, count, received, sent, latency, latest)
                    self.records += count
                same_end = len(line) - len(latency_us)
                same = line[16:same_end]
                minute_ms = key[0] * 1000
                time_text = ts
                received, sent = line_received, line_sent
                count = latency = latest = 0
                run_totals = totals
            last_totals = totals
        if count:
            _count_run(run_totals, count, received, sent, latency, latest)
            self.records += count

    def _decodes(self, entities: bytes, source: str) -> bool:
        """Whether a raw middle decodes (once per batch; logged once when it does not)."""
        if entities in self._decoded:
            return self._decoded[entities] is not None
        try:
            self._decoded[entities] = decode_line(b"1\t0\t%s\t0\t0\t0\t0" % entities)
        except ValueError as exc:
            self._decoded[entities] = None
            log.error("usage spool %s: skipping malformed lines: bad consumer, service and route "
                      "fields %r (%s)", source, entities[:200], exc)
            return False
        return True

    def _fold(self) -> None:
        """Decode the groups summed so far into `minutes` and `names`."""
        for (minute, entities, status), totals in self._groups.items():
            count, request_bytes, response_bytes, latency_us, ts_ms = totals
            record = self._decoded[entities]
            assert record is not None  # a group is only made of lines whose middle decodes
            self._add(record._replace(ts_ms=ts_ms, status=status), count, minute,
                      (request_bytes, response_bytes, latency_us))
        self._groups.clear()

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
