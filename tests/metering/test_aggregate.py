"""UsageBatch.add_lines sums lines under their raw consumer/service/route fields; the result must be
exactly what decoding and adding every line one by one gives, bad lines included."""

from __future__ import annotations

import logging
import random

import pytest

from tests.metering.conftest import ALICE, BOB, ROUTE, ROUTE2, SERVICE, finished_call
from tollway.metering.aggregate import UsageBatch
from tollway.metering.records import decode_line, encode_call


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
    return batch.records, batch.bad_lines, rows, names


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
