"""The spool: one line per call, rotation, partial lines, escaping, and the cost of append()."""

from __future__ import annotations

import os
import time
from pathlib import Path

from tests.metering.conftest import ALICE, finished_call
from tollway.metering.aggregate import UsageBatch
from tollway.metering.spool import RELEASE_EVERY, SpoolChunk, SpoolReader, SpoolWriter
from tollway.metering.spool_line import UsageRecord, decode_line, encode_call


def read_all(reader: SpoolReader) -> list[UsageRecord]:
    records = []
    for file in reader.files():
        for chunk in reader.read(file, 0):
            records += [decode_line(line) for line in chunk.lines]
    return records


def test_append_and_read_round_trip(tmp_path: Path) -> None:
    with SpoolWriter(tmp_path, "w1") as writer:
        writer.append(finished_call(started_at=1_800_000_000.123, status=404, request_bytes=7, response_bytes=9))
        writer.append(finished_call(started_at=1_800_000_001.0, consumer=None, service=None))
    records = read_all(SpoolReader(tmp_path))
    assert records[0] == UsageRecord(1_800_000_000_123, ALICE["id"], "alice", "cust-a",
                                     "33333333-3333-4333-8333-333333333333", "mock",
                                     "44444444-4444-4444-8444-444444444444", "mock", 404, 7, 9,
                                     records[0].latency_us)
    assert records[1].consumer_id == "" and records[1].consumer_username is None
    assert records[1].service_id == "" and records[1].service_name is None


def test_latency_is_measured_from_started_at() -> None:
    record = decode_line(encode_call(finished_call(started_at=100.0), now=100.25))
    assert record.latency_us == 250_000


def test_odd_names_are_escaped_and_never_split_a_record() -> None:
    odd = "tab\there\nnew\\line\r and ünïcødé \\t"
    consumer = {"id": "c-1", "username": odd, "custom_id": "\\"}
    record = decode_line(encode_call(finished_call(started_at=1.0, consumer=consumer,
                                              route={"id": "r", "name": "a\tb"}), now=1.0))
    assert record.consumer_username == odd
    assert record.consumer_custom_id == "\\"
    assert record.route_name == "a\tb"
    assert encode_call(finished_call(started_at=1.0, consumer=consumer), now=1.0).count(b"\n") == 1


def test_rotation_by_size_keeps_every_record_and_finishes_older_files(tmp_path: Path) -> None:
    writer = SpoolWriter(tmp_path, "w1", file_bytes=1000)
    for i in range(100):
        writer.append(finished_call(started_at=1_800_000_000 + i))
    files = SpoolReader(tmp_path).files()
    assert len(files) > 5
    assert [f.finished for f in files] == [True] * (len(files) - 1) + [False]  # the last is still locked
    assert [r.ts_ms for r in read_all(SpoolReader(tmp_path))] == [(1_800_000_000 + i) * 1000 for i in range(100)]
    writer.close()
    assert all(f.finished for f in SpoolReader(tmp_path).files())


def test_a_new_writer_with_the_same_id_never_appends_to_an_old_file(tmp_path: Path) -> None:
    SpoolWriter(tmp_path, "w1").close()
    second = SpoolWriter(tmp_path, "w1")
    files = SpoolReader(tmp_path).files()
    assert len(files) == 2 and files[0].finished and not files[1].finished
    assert files[1].path == second.path
    second.close()


def test_a_record_being_copied_is_read_only_once_every_byte_of_it_is_there(tmp_path: Path) -> None:
    writer = SpoolWriter(tmp_path, "w1")
    writer.append(finished_call(started_at=1.0))
    line = encode_call(finished_call(started_at=2.0), now=2.0)
    at = writer.recorded_bytes
    fd = os.open(writer.path, os.O_WRONLY)
    try:
        # A copy caught half way, its end (newline included) landing before its middle: the reader
        # stops at the first byte still NUL.
        os.pwrite(fd, line[:10], at)
        os.pwrite(fd, line[20:], at + 20)
        reader = SpoolReader(tmp_path)
        [file] = reader.files()
        assert not file.finished and file.size == writer.file_bytes
        chunks = list(reader.read(file, 0))
        assert sum(len(c.lines) for c in chunks) == 1
        assert chunks[-1].end == at and chunks[-1].cut_off == 0
        assert list(reader.read(file, at)) == []
        os.pwrite(fd, line[10:20], at + 10)
        assert [decode_line(x).ts_ms for c in reader.read(file, at) for x in c.lines] == [2000]
        # A finished file whose last record never completed: the fragment is skipped, and the
        # offset moves to the end of the file, past the bytes never written.
        os.pwrite(fd, line[:5], at + len(line))
    finally:
        os.close(fd)
    writer.close()
    [file] = reader.files()
    assert file.finished
    tail = list(reader.read(file, at + len(line)))
    assert tail == [SpoolChunk([], at + len(line) + 5, cut_off=5), SpoolChunk([], file.size)]


def test_a_file_written_by_an_older_version_with_write_is_read_to_its_end(tmp_path: Path) -> None:
    lines = [encode_call(finished_call(started_at=float(i)), now=float(i)) for i in range(3)]
    (tmp_path / "w1.0000000000000001.000001.spool").write_bytes(b"".join(lines) + lines[0][:7])
    reader = SpoolReader(tmp_path)
    [file] = reader.files()
    assert file.finished
    chunks = list(reader.read(file, 0))
    assert [decode_line(x).ts_ms for c in chunks for x in c.lines] == [0, 1000, 2000]
    assert chunks[-2:] == [SpoolChunk([], file.size, cut_off=7), SpoolChunk([], file.size)]


def test_records_after_a_hole_in_a_finished_file_are_still_read(tmp_path: Path) -> None:
    # A machine crash can lose pages of a file mid-way (written back in any order): the records a
    # hole cuts into are skipped, the complete ones around it are read.
    lines = [encode_call(finished_call(started_at=float(i)), now=float(i)) for i in range(6)]
    data = (lines[0] + lines[1][:30] + b"\0" * 4096 + lines[2][50:] + lines[3] + lines[4]
            + lines[5][:40] + b"\0" * 1000)
    (tmp_path / "w1.0000000000000001.000001.spool").write_bytes(data)
    reader = SpoolReader(tmp_path)
    [file] = reader.files()
    for chunk_bytes in (len(data), 777, 64):  # holes and records across chunk boundaries
        chunks = list(reader.read(file, 0, chunk_bytes=chunk_bytes))
        assert [c.cut_off for c in chunks if c.cut_off] == [30, 40]
        assert chunks[-1] == SpoolChunk([], file.size)
        batch = UsageBatch()
        for chunk in chunks:
            batch.add_lines(chunk.lines)
        # lines[2]'s tail is a line of its own, refused as malformed; 0, 3 and 4 are counted
        assert (batch.records, batch.bad_lines) == (3, 1)


def test_recorded_pages_leave_the_writer_but_not_the_file(tmp_path: Path) -> None:
    with SpoolWriter(tmp_path, "w1") as writer:
        n = 0
        while writer.recorded_bytes < 3 * RELEASE_EVERY:
            writer.append(finished_call(started_at=float(n)))
            n += 1
        assert writer._released >= 2 * RELEASE_EVERY
    assert [decode_line(x).ts_ms for x in read_lines(tmp_path)] == [i * 1000 for i in range(n)]


def read_lines(spool_dir: Path) -> list[bytes]:
    reader = SpoolReader(spool_dir)
    return [line for file in reader.files() for chunk in reader.read(file, 0) for line in chunk.lines]


def test_reader_reads_in_chunks_without_splitting_lines(tmp_path: Path) -> None:
    with SpoolWriter(tmp_path, "w1") as writer:
        for i in range(500):
            writer.append(finished_call(started_at=float(i)))
    reader = SpoolReader(tmp_path)
    [file] = reader.files()
    chunks = list(reader.read(file, 0, chunk_bytes=1000))
    assert len(chunks) > 10
    assert [decode_line(x).ts_ms for c in chunks for x in c.lines] == [i * 1000 for i in range(500)]


def test_writer_alive_callback_decides_when_the_last_file_is_finished(tmp_path: Path) -> None:
    writer = SpoolWriter(tmp_path, "w1")
    writer.append(finished_call(started_at=1.0))
    assert SpoolReader(tmp_path, writer_alive=lambda w: False).files()[0].finished
    assert not SpoolReader(tmp_path, writer_alive=lambda w: True).files()[0].finished
    writer.close()


def test_append_cost(tmp_path: Path) -> None:
    """One append is an encode and one copy into the file's mapping; printed for the report, bounded loosely for CI."""
    call = finished_call(started_at=time.time())
    n = 20_000
    with SpoolWriter(tmp_path, "bench") as writer:
        begin = time.perf_counter_ns()
        for _ in range(n):
            writer.append(call)
        per_call = (time.perf_counter_ns() - begin) / n
        assert writer.path.read_bytes().count(b"\n") == n
    print(f"\nSpoolWriter.append: {per_call:.0f} ns/call")
    assert per_call < 50_000


def test_a_hidden_file_left_by_a_writer_killed_while_opening_it_is_abandoned_after_a_while(tmp_path: Path) -> None:
    hidden = tmp_path / ".w1.0000000000000001.000001.spool.new"
    hidden.write_bytes(b"")
    reader = SpoolReader(tmp_path)
    assert reader.abandoned(older_than=time.time() - 60) == []  # it may be a writer about to lock it
    os.utime(hidden, (time.time() - 120, time.time() - 120))
    assert reader.abandoned(older_than=time.time() - 60) == [hidden]
    assert reader.files() == []


def test_the_caching_encoder_writes_exactly_what_encode_call_writes() -> None:
    from tollway.metering.spool_line import LineEncoder, encode_call

    encoder = LineEncoder()
    odd = {"id": "c1", "username": "tab\there\\back", "custom_id": "new\nline"}
    service = {"id": "s1", "name": "mock"}
    routes = ({"id": "r1", "name": "mock"}, {"id": "r2", "name": None})  # the same dicts for every consumer
    calls = []
    for consumer in (None, odd, {"id": "c2", "username": "plain", "custom_id": None}):
        for route in routes:
            call = finished_call(1_795_000_000.25, consumer=consumer, service=service,
                                 route=route, status=401, request_bytes=81, response_bytes=223)
            calls.append(call)
            for _ in range(2):  # the second time from the last entry
                assert encoder.encode(call, 1_795_000_000.5) == encode_call(call, 1_795_000_000.5)
    for call in calls[::-1] + calls[::2]:  # from the cache, each after another
        assert encoder.encode(call, 1_795_000_000.5) == encode_call(call, 1_795_000_000.5)


def test_the_caching_encoder_writes_each_calls_own_time_status_and_sizes() -> None:
    from tollway.metering.spool_line import LineEncoder

    # The millisecond, the status and the byte counts are kept as text while they repeat: any
    # one of them changing alone must show in the next line.
    encoder = LineEncoder()
    service, route = {"id": "s1", "name": "mock"}, {"id": "r1", "name": "mock"}
    steps = [(1_795_000_000.0011, 200, 81, 223), (1_795_000_000.0012, 200, 81, 223),
             (1_795_000_000.0021, 200, 81, 223), (1_795_000_000.0021, 404, 81, 223),
             (1_795_000_000.0021, 404, 82, 223), (1_795_000_000.0021, 404, 82, 224),
             (1_795_000_000.0021, 200, 81, 223), (1_795_000_000.0011, 200, 81, 223)]
    for started, status, request_bytes, response_bytes in steps:
        call = finished_call(started, consumer=ALICE, service=service, route=route, status=status,
                             request_bytes=request_bytes, response_bytes=response_bytes)
        assert encoder.encode(call, started + 0.5) == encode_call(call, started + 0.5)
