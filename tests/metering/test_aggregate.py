"""UsageBatch.add_lines sums lines under their raw consumer/service/route fields; the result must be
exactly what decoding and adding every line one by one gives, bad lines included."""

from __future__ import annotations

import logging
import random

import pytest

from tests.metering.conftest import ALICE, BOB, ROUTE, ROUTE2, SERVICE, finished_call
from tollway.metering.aggregate import MAX_RUNS, UsageBatch
from tollway.metering.spool_line import decode_line, encode_call


def one_by_one(lines: list[bytes]) -> UsageBatch:
    batch = UsageBatch()
    for line in lines:
        if not line:
            continue
        try:
            record = decode_line(line)
        except ValueError:
            batch.bad_lines += 1
            continue
        batch.add(record)
    return batch


def summary(batch: UsageBatch) -> tuple[object, ...]:
    rows = sorted((tuple(sorted(row.items())) for row in batch.usage_rows()), key=repr)
    names = sorted((tuple(sorted(row.items())) for row in batch.name_rows()), key=repr)
    latencies = sorted((tuple(sorted(row.items())) for row in batch.latency_rows()), key=repr)
    return batch.records, batch.bad_lines, rows, names, latencies


def test_grouped_sums_equal_one_by_one_sums_on_random_traffic() -> None:
    rng = random.Random(7)
    renamed = dict(ALICE, username="alice-renamed")
    lines = []
    for _ in range(5000):
        call = finished_call(started_at=1_790_000_000 + rng.uniform(0, 7200),
                        consumer=rng.choice([dict(ALICE), dict(BOB), renamed, None]),
                        service=rng.choice([dict(SERVICE), None]),
                        route=dict(rng.choice([ROUTE, ROUTE2, dict(ROUTE, name="tab\there")])),
                        status=rng.choice([200, 201, 401, 404, 502]),
                        request_bytes=rng.randrange(0, 5000), response_bytes=rng.randrange(0, 10**6))
        lines.append(encode_call(call, call.started_at + rng.uniform(0, 2)).rstrip(b"\n"))
    batch = UsageBatch()
    batch.add_lines(lines)
    assert summary(batch) == summary(one_by_one(lines))
    assert batch.records == 5000 and batch.bad_lines == 0


def test_malformed_lines_are_skipped_one_by_one_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    good = encode_call(finished_call(started_at=1_790_000_000.5), 1_790_000_000.6).rstrip(b"\n")
    extra_field = good.replace(b"\talice\t", b"\talice\textra\t")
    bad_name = good.replace(b"alice", b"al\xffice")
    lines = [
        good, b"", good,
        b"2" + good[1:],                           # an unknown format version
        good.rsplit(b"\t", 1)[0],                  # a field short
        good.replace(b"\t200\t", b"\tOK\t"),       # a status that is not a number
        extra_field, extra_field,                  # consumer fields one too many, twice
        bad_name,                                  # not UTF-8
        b"garbage",
    ]
    batch = UsageBatch()
    with caplog.at_level(logging.ERROR, "tollway.metering.aggregate"):
        batch.add_lines(lines, "w1.0.000001.spool")
    assert (batch.records, batch.bad_lines) == (2, 7)
    assert summary(batch) == summary(one_by_one(lines))
    assert all("w1.0.000001.spool" in message for message in caplog.messages)


@pytest.mark.parametrize("change", [
    "next minute", "status", "route", "consumer", "bad number", "field more", "field short", "other century",
    "14 digits", "12 digits", "no tab after the time", "version", "status with a space",
    "request bytes", "response bytes", "latency with a tab before", "latency with a tab after",
    "time with a tab before", "time with a tab after", "latency not a number", "time not a number",
    "previous minute", "empty latency",
])
def test_runs_of_one_clients_lines_sum_as_one_by_one_whatever_breaks_them(change: str) -> None:
    # Lines alike but for their numbers are summed after their middle only; every way a line can
    # differ from the run before it must be noticed, and the run taken up again after it.
    def line(started_at: float, **fields: object) -> bytes:
        call = finished_call(started_at=started_at, **fields)  # type: ignore[arg-type]
        return encode_call(call, started_at + 0.002).rstrip(b"\n")

    base = 1_790_000_039.5  # 20.5 s before a minute ends
    good = line(base + 5)
    changed = {
        "next minute": line(base + 21),
        "status": line(base + 5, status=404),
        "route": line(base + 5, route=ROUTE2),
        "consumer": line(base + 5, consumer=dict(BOB)),
        "bad number": good.replace(b"\t100\t", b"\t1o0\t"),
        "field more": good + b"\t7",
        "field short": good.rsplit(b"\t", 1)[0],
        "other century": good[:2] + b"9" + good[3:],
        "14 digits": good[:2] + b"0" + good[2:],
        "12 digits": good[:2] + good[3:],
        "no tab after the time": good[:15] + b"X" + good[16:],
        "version": b"2" + good[1:],
        "status with a space": good.replace(b"\t200\t", b"\t200 \t"),
        "request bytes": line(base + 5, request_bytes=101),
        "response bytes": line(base + 5, response_bytes=999),
        "latency with a tab before": good[:good.rindex(b"\t")] + b"\t\t" + good[good.rindex(b"\t") + 1:],
        "latency with a tab after": good + b"\t",
        "time with a tab before": good[:2] + b"\t" + good[3:],
        "time with a tab after": good[:14] + b"\t" + good[15:],
        "latency not a number": good[:good.rindex(b"\t") + 1] + b"2o00",
        "time not a number": good[:2] + b"17900000:9500" + good[15:],
        "previous minute": line(base - 0.6),
        "empty latency": good[:good.rindex(b"\t") + 1],
    }[change]
    lines = [line(base + n) for n in range(5)] + [changed] + [line(base + n) for n in range(6, 10)]
    batch = UsageBatch()
    batch.add_lines(lines)
    assert summary(batch) == summary(one_by_one(lines))


def test_a_batch_sums_many_clients_over_many_chunks_as_one_by_one(caplog: pytest.LogCaptureFixture) -> None:
    # Lines are summed raw across add_lines calls (a flush reads a spool in chunks) and decoded
    # once per batch; a malformed middle is logged once per batch, each of its lines counted bad.
    rng = random.Random(11)
    consumers = [dict(ALICE, id=f"{n:08d}-1111-4111-8111-111111111111", username=f"user{n}") for n in range(60)]
    lines = []
    for n in range(3000):
        call = finished_call(started_at=1_790_000_000 + n * 0.05, consumer=rng.choice(consumers),
                             request_bytes=rng.choice([100, 100, 100, 7]))
        lines.append(encode_call(call, call.started_at + 0.001).rstrip(b"\n"))
    broken = lines[10].replace(b"user", b"us\xffer")
    lines[100:100] = [broken] * 3
    batch = UsageBatch()
    with caplog.at_level(logging.ERROR, "tollway.metering.aggregate"):
        for start in range(0, len(lines), 97):
            batch.add_lines(lines[start:start + 97], "w1.0.000001.spool")
    assert (batch.records, batch.bad_lines) == (3000, 3)
    assert summary(batch) == summary(one_by_one(lines))
    assert len(caplog.messages) == 1


def test_rows_asked_twice_or_between_chunks_are_the_same() -> None:
    lines = [encode_call(finished_call(started_at=1_790_000_000 + n), 1_790_000_000 + n + 0.01).rstrip(b"\n")
             for n in range(100)]
    batch = UsageBatch()
    batch.add_lines(lines[:50])
    first = summary(batch)
    batch.add_lines(lines[50:])
    assert summary(batch) == summary(batch) == summary(one_by_one(lines)) != first


def test_runs_out_of_time_order_and_odd_time_fields_sum_as_one_by_one() -> None:
    def line(started_at: float, **fields: object) -> bytes:
        call = finished_call(started_at=started_at, **fields)  # type: ignore[arg-type]
        return encode_call(call, started_at + 0.002).rstrip(b"\n")

    def with_time(line: bytes, text: bytes) -> bytes:
        return line[:2] + text + line[line.index(b"\t", 2):]

    base = 1_790_000_000.0
    late_first = ([line(base + n) for n in range(5)] + [line(base + 9, request_bytes=7)]
                  + [line(base + n, request_bytes=7) for n in (6, 7, 8)])
    assert summary(_summed(late_first)) == summary(one_by_one(late_first))
    # Times of 13 characters near the epoch, where a tab in place of a digit keeps the value in the minute
    near_epoch = [with_time(line(base), b"00000000010%02d" % n) for n in range(5)]
    for odd in (b"\t000000001005", b"000000000100\t"):
        lines = [*near_epoch, with_time(line(base), odd), *near_epoch]
        assert summary(_summed(lines)) == summary(one_by_one(lines))
    # Times of 14 digits throughout (a leading zero): never a run, still summed
    padded = [with_time(line(base + n), b"0%d" % int((base + n) * 1000)) for n in range(6)]
    assert summary(_summed(padded)) == summary(one_by_one(padded))


def _summed(lines: list[bytes]) -> UsageBatch:
    batch = UsageBatch()
    batch.add_lines(lines)
    return batch


def test_more_distinct_runs_than_a_batch_keeps_sum_as_one_by_one() -> None:
    # Response sizes that vary make every line's byte counts new: each starts a run of its own,
    # past MAX_RUNS, while one steady client's lines keep running between them.
    rng = random.Random(5)
    lines = []
    for n in range(2 * MAX_RUNS + 500):
        steady = n % 3 == 0
        call = finished_call(started_at=1_790_000_000 + n * 0.01, consumer=dict(BOB if steady else ALICE),
                             response_bytes=1000 if steady else rng.randrange(10**6))
        lines.append(encode_call(call, call.started_at + 0.001).rstrip(b"\n"))
    batch = UsageBatch()
    for start in range(0, len(lines), 1000):
        batch.add_lines(lines[start:start + 1000])
    assert batch.records == len(lines)
    assert summary(batch) == summary(one_by_one(lines))
