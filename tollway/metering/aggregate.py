"""Sums usage records into ledger rows: per UTC minute, then rolled up into hour, day, week and month.

Beside the sums, every group counts its calls per latency bucket (tollway.metering.latency), kept
per service, route and minute in the ledger's latency histograms.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from tollway.metering.latency import BUCKETS, count_into, merge, nonzero
from tollway.metering.periods import bucket_floor
from tollway.metering.spool_line import (
    MIDDLE_START,
    TAB,
    TIME_DIGITS,
    TIME_END,
    TIME_START,
    VERSION_BYTE,
    UsageRecord,
    decode_line,
)

log = logging.getLogger(__name__)

# (minute_start, consumer_id, service_id, route_id, status)
Key = tuple[int, str, str, str, int]

MAX_RUNS = 4096  # runs a batch keeps; all are closed and forgotten when there would be more


def _count(totals: list[int], received: int, sent: int, latency: int, ts_ms: int) -> None:
    """One more line in a group: [lines, request bytes, response bytes, latency sum, latest ms]."""
    totals[0] += 1
    totals[1] += received
    totals[2] += sent
    totals[3] += latency
    if ts_ms > totals[4]:
        totals[4] = ts_ms


class _Run:
    """A client's lines of one status in one minute, alike but for their time and numbers:
    counted apart, then added to their group (`close`).

    `stem` is the run's bytes from MIDDLE_START to the tab after the status: its middle and
    status. A line is one of the run's when it holds them at that place byte for byte, after
    version 1 and a time of TIME_DIGITS characters, and when its time is in the run's minute. Then every field of
    the line is known but its time and three numbers, and only those are read; the two byte
    counts not even that when their text is the run's line before's.
    """

    def __init__(self, stem: bytes, minute_ms: int, time_text: bytes, counts: bytes, received: int, sent: int,
                 totals: list[int], histogram: list[int]) -> None:
        self.stem = stem
        self.stem_end = MIDDLE_START + len(stem)  # where a line's byte counts begin
        self.minute_ms = minute_ms      # the run's lines' times are in [minute_ms, minute_ms + 60_000)
        self.time_text = time_text      # the time field of the run's line before
        self.same = stem + counts       # its stem and b"<request bytes>\t<response bytes>\t"
        self.latency_at = self.stem_end + len(counts)
        self.received = received        # its byte counts
        self.sent = sent
        self.totals = totals
        self.histogram = histogram      # the group's latency histogram: counted into at once
        self.count = 0                  # the lines taken and not yet added to totals, and their sums
        self.received_sum = 0
        self.sent_sum = 0
        self.latency = 0
        self.latest = 0

    def take(self, line: bytes) -> bool:
        """Count `line` when it is one of this run's."""
        # A tab at either end of a number would be a field of its own: int() would skip it.
        if not (len(line) > MIDDLE_START and line[0] == VERSION_BYTE and line[1] == TAB and line[TIME_END] == TAB
                and line[-1] != TAB):
            return False
        latency_at = self.latency_at
        other_counts = False
        try:
            if len(line) > latency_at and line[MIDDLE_START:latency_at] == self.same and line[latency_at] != TAB:
                received, sent = self.received, self.sent  # the byte counts of the line before
                latency = int(line[latency_at:])
            else:
                other_counts = True
                stem_end = self.stem_end
                if not (len(line) > stem_end and line[MIDDLE_START:stem_end] == self.stem):
                    return False
                numbers = line[stem_end:].split(b"\t")
                if len(numbers) != 3:
                    return False
                received, sent, latency = int(numbers[0]), int(numbers[1]), int(numbers[2])
                latency_at = len(line) - len(numbers[2])
            text = line[TIME_START:TIME_END]
            if text != self.time_text:
                ts_ms = int(text)
                if ts_ms < self.minute_ms or ts_ms - self.minute_ms >= 60_000 or text[0] == TAB or text[-1] == TAB:
                    return False
                self.time_text = text
                if ts_ms > self.latest:
                    self.latest = ts_ms
        except ValueError:
            return False  # a bad number: the line is counted as bad, with its reason, by add_lines
        if other_counts:  # kept for the lines after, as text and as numbers
            self.same = line[MIDDLE_START:latency_at]
            self.latency_at, self.received, self.sent = latency_at, received, sent
        self.count += 1
        self.received_sum += received
        self.sent_sum += sent
        self.latency += latency
        count_into(self.histogram, latency)
        return True

    def close(self) -> None:
        """Add the lines taken to the run's group."""
        if self.count:
            totals = self.totals
            totals[0] += self.count
            totals[1] += self.received_sum
            totals[2] += self.sent_sum
            totals[3] += self.latency
            if self.latest > totals[4]:
                totals[4] = self.latest
            self.count = self.received_sum = self.sent_sum = self.latency = 0


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
        self._histograms: dict[tuple[int, bytes, int], list[int]] = {}  # group -> calls per latency bucket
        # (minute, service_id, route_id) -> latency bucket -> calls, once decoded
        self._latencies: dict[tuple[int, str, str], dict[int, int]] = {}
        self._decoded: dict[bytes, UsageRecord | None] = {}  # raw middle -> decoded (None: malformed)
        self._runs: dict[bytes, _Run] = {}  # the run of each middle and status (a line's stem)

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

    @property
    def latencies(self) -> dict[tuple[int, str, str], dict[int, int]]:
        """Calls per latency bucket per (minute, service, route)."""
        self._fold()
        return self._latencies

    def add(self, record: UsageRecord) -> None:
        """Count one decoded call."""
        self.records += 1
        self._add(record, 1, None, None)
        key = (record.ts_ms // 60_000 * 60, record.service_id, record.route_id)
        histogram = [0] * BUCKETS
        count_into(histogram, record.latency_us)
        merge(self._latencies.setdefault(key, {}), nonzero(histogram).items())

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

        The flusher's hot loop. A line is split at its ends (format version and time at the
        front, the four numbers at the back) and summed under its raw middle, the consumer,
        service and route fields; each distinct middle is decoded once per batch.

        Most lines need less: a client's calls are alike but for their time and numbers. A line
        whose time has 13 digits (as every time from 2001 to 2286 does) starts a run (`_Run`) of
        the lines whose middle and status are byte for byte its own, in its minute: those are
        only compared and have their numbers read (the byte counts only when they differ from
        the run's line before), and their time when it differs. The run of the line before is
        tried first, then the run of the line's own middle and status, if the batch has one.
        """
        groups = self._groups
        runs = self._runs
        run: _Run | None = None  # the run of the line before
        taken = 0                # lines counted by runs
        for line in lines:
            if run is not None and run.take(line):
                taken += 1
                continue
            if not line:
                continue  # a writer's probe after a write failure (see tollway.metering.spool)
            numbers = line.rsplit(b"\t", 3)  # what precedes the byte counts, and the three numbers
            stem_end = len(numbers[0]) + 1
            # (A line of fewer fields has no run; compiled, a slice must not end before it starts.)
            other = runs.get(line[MIDDLE_START:stem_end]) if len(numbers) == 4 and stem_end > MIDDLE_START else None
            if other is not None and other.take(line):
                taken += 1
                run = other
                continue
            try:
                head, status, request_bytes, response_bytes, latency_us = (*numbers[0].rsplit(b"\t", 1), *numbers[1:])
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
                if not self._decodes(entities, source):
                    self.bad_lines += 1
                    continue
                totals = groups[key] = [1, received, sent, latency, ts_ms]
                histogram = self._histograms[key] = [0] * BUCKETS
            else:
                _count(totals, received, sent, latency, ts_ms)
                histogram = self._histograms[key]
            count_into(histogram, latency)
            self.records += 1
            if len(ts) == TIME_DIGITS:
                stem = line[MIDDLE_START:stem_end]
                old = runs.get(stem)
                if old is not None:
                    old.close()
                elif len(runs) >= MAX_RUNS:
                    self._close_runs()
                counts = line[stem_end:len(line) - len(latency_us)]
                run = runs[stem] = _Run(stem, key[0] * 1000, ts, counts, received, sent, totals, histogram)
        self.records += taken

    def _close_runs(self) -> None:
        for run in self._runs.values():
            run.close()
        self._runs.clear()

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
        self._close_runs()
        for (minute, entities, status), totals in self._groups.items():
            count, request_bytes, response_bytes, latency_us, ts_ms = totals
            record = self._decoded[entities]
            assert record is not None  # a group is only made of lines whose middle decodes
            self._add(record._replace(ts_ms=ts_ms, status=status), count, minute,
                      (request_bytes, response_bytes, latency_us))
            merge(self._latencies.setdefault((minute, record.service_id, record.route_id), {}),
                  nonzero(self._histograms[(minute, entities, status)]).items())
        self._groups.clear()
        self._histograms.clear()

    def _bad(self, source: str, line: bytes, exc: Exception) -> None:
        self.bad_lines += 1
        log.error("usage spool %s: skipping a malformed line: %s (%r)", source, exc, line[:200])

    def usage_rows(self) -> list[dict[str, Any]]:
        """Ledger rows of every grain (minute, hour, day, week, month) for this batch."""
        grains: dict[tuple[str, int, str, str, str, int], list[int]] = {}
        weeks_and_months: dict[int, tuple[int, int]] = {}  # by day: the day's UTC week and month
        for (minute, consumer, service, route, status), totals in self.minutes.items():
            day = minute - minute % 86_400
            found = weeks_and_months.get(day)
            if found is None:
                found = weeks_and_months[day] = (bucket_floor(day, "week"), bucket_floor(day, "month"))
            week, month = found
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

    def latency_rows(self) -> list[dict[str, Any]]:
        """Latency histogram rows of every grain for this batch."""
        grains: dict[tuple[str, int, str, str], dict[int, int]] = {}
        for (minute, service, route), histogram in self.latencies.items():
            day = minute - minute % 86_400
            for grain, start in (("minute", minute), ("hour", minute - minute % 3600), ("day", day),
                                 ("week", bucket_floor(day, "week")), ("month", bucket_floor(day, "month"))):
                merge(grains.setdefault((grain, start, service, route), {}), histogram.items())
        return [
            {"grain": grain, "bucket_start": start, "service_id": service, "route_id": route, "bucket": bucket,
             "calls": calls}
            for (grain, start, service, route), histogram in grains.items() for bucket, calls in histogram.items()
        ]

    def name_rows(self) -> list[dict[str, Any]]:
        """billable_names rows for every id seen in this batch."""
        return [{"kind": kind, "id": id_, "name": name, "custom_id": custom_id, "seen_ms": seen}
                for (kind, id_), (name, custom_id, seen) in self.names.items()]
