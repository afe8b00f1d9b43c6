"""AccessLog alone: what a line holds for awkward values, how lines are batched into writes, when
they are flushed, and how a moved file is followed. End to end: tests/server/test_access_log.py."""

from __future__ import annotations

import asyncio
import json
import os
import select
from pathlib import Path

import pytest

from tollway.config import load_settings
from tollway.proxy.access_log import FLUSH_BYTES, FLUSH_INTERVAL, AccessLog, json_value, text_value
from tollway.proxy.call import Call


def _call(path: str = "/p", query: str = "", **fields: object) -> Call:
    call = Call(b"GET", path, query, [(b"user-agent", b"ua/1")], "10.0.0.7", 1_700_000_000.25, 100.0)
    call.status = 200
    call.route = {"id": "r-id", "name": "r"}
    for name, value in fields.items():
        setattr(call, name, value)
    return call


def _log(tmp_path: Path, fmt: str = "json") -> AccessLog:
    settings = load_settings(environ={}, prefix=str(tmp_path), access_log="logs/access.log", access_log_format=fmt)
    access_log = AccessLog.from_settings(settings)
    assert access_log is not None and access_log.path == str(tmp_path / "logs" / "access.log")
    return access_log


def test_off_is_no_access_log(tmp_path: Path) -> None:
    assert AccessLog.from_settings(load_settings(environ={}, prefix=str(tmp_path))) is None


def test_json_escapes_what_a_client_or_an_admin_can_put_in_a_value(tmp_path: Path) -> None:
    consumer = {"id": "c", "username": 'Zoë "the" \\ \n admin'}
    call = _call('/a"b\\c\xe9', "x=\x01", consumer=consumer, service={"id": "s-id", "name": None},
                 headers=[(b"user-agent", b'q"\\\x7f'), (b"referer", b"http://r/")])
    entry = json.loads(AccessLog.json_line(_log(tmp_path), call, 100.5))
    assert entry["consumer"] == consumer["username"] and entry["uri"] == '/a"b\\c\xe9?x=\x01'
    assert entry["user_agent"] == 'q"\\\x7f' and entry["referer"] == "http://r/"
    assert (entry["service"], entry["route"]) == ("s-id", "r")  # a service without a name: its id
    assert entry["time"] == "2023-11-14T22:13:20.250Z"
    assert entry["latencies"] == {"kong": 500, "proxy": -1, "request": 500}  # never sent upstream


def test_text_escapes_quotes_backslashes_control_bytes_and_spaces_in_bare_fields(tmp_path: Path) -> None:
    call = _call('/a"b\xe9', "", consumer={"id": "c", "username": "Zoë x"},
                 headers=[(b"user-agent", b'say "hi"\\ \x1b')])
    line = _log(tmp_path, "text").text_line(call, 100.25).decode("ascii")
    assert line == ('10.0.0.7 - Zo\\xC3\\xAB\\x20x [2023-11-14T22:13:20.250Z] "GET /a\\x22b\\xE9 HTTP/1.1" 200 0 '
                    '"-" "say \\x22hi\\x22\\x5C \\x1B" request_bytes=0 kong_ms=250 upstream_ms=-1 request_ms=250 '
                    "service=- route=r\n")


def test_latencies_split_the_call_at_the_upstream(tmp_path: Path) -> None:
    sent = _call(sent_at=100.125, first_byte_at=100.25)
    assert AccessLog.latencies(sent, 100.5) == (125, 125, 500)
    unanswered = _call(sent_at=100.125)  # the upstream never answered: its time is the wait
    assert AccessLog.latencies(unanswered, 100.625) == (125, 500, 625)


def test_lines_are_written_whole_in_one_write_per_batch_below_pipe_buf_to_a_pipe() -> None:
    read_end, write_end = os.pipe()
    try:
        access_log = AccessLog(None, True)
        access_log.fd = write_end
        lines = [b"%04d%s\n" % (n, b"x" * (300 + n)) for n in range(40)]
        access_log.lines = list(lines)
        sizes: list[int] = []
        real_write = os.write

        def write(fd: int, data: bytes) -> int:
            sizes.append(len(data))
            return real_write(fd, data)

        os.write = write  # type: ignore[assignment]
        try:
            access_log.flush()
        finally:
            os.write = real_write  # type: ignore[assignment]
        received = b""
        while len(received) < sum(map(len, lines)):
            received += os.read(read_end, 65536)
        assert received == b"".join(lines) and access_log.written == 40
        assert len(sizes) > 1 and max(sizes) <= select.PIPE_BUF
    finally:
        os.close(read_end)
        os.close(write_end)


def test_a_file_gets_one_write_per_flush_and_is_flushed_by_size_without_waiting(tmp_path: Path) -> None:
    access_log = _log(tmp_path)
    call = _call(headers=[(b"user-agent", b"u" * 1000)])
    size = len(access_log.json_line(call, 101.0))
    count = 0
    while not Path(access_log.path or "").stat().st_size:
        access_log.record(call, 101.0)
        count += 1
    assert count == -(-FLUSH_BYTES // size)  # no loop, so no timer: written once FLUSH_BYTES were kept
    assert len(Path(access_log.path or "").read_bytes().splitlines()) == count == access_log.written


def test_the_timer_flushes_a_second_after_the_first_line_and_close_flushes_the_rest(tmp_path: Path) -> None:
    access_log = _log(tmp_path)
    path = Path(access_log.path or "")

    async def run() -> tuple[int, int]:
        access_log.start(asyncio.get_running_loop())
        access_log.record(_call(), 100.1)
        await asyncio.sleep(FLUSH_INTERVAL / 2)
        before = path.stat().st_size
        await asyncio.sleep(FLUSH_INTERVAL / 2 + 0.2)
        return before, len(path.read_bytes().splitlines())

    assert asyncio.run(run()) == (0, 1)
    access_log.loop = None  # no loop now: only close() writes
    access_log.record(_call(path="/last"), 100.1)
    assert len(path.read_bytes().splitlines()) == 1
    access_log.close()
    access_log.record(_call(path="/after-close"), 100.1)  # a connection a drain aborted: written at once
    assert [json.loads(line)["uri"] for line in path.read_bytes().splitlines()] == ["/p", "/last", "/after-close"]


@pytest.mark.parametrize("how", ["moved", "removed"])
def test_a_moved_or_removed_file_is_opened_again_at_the_next_flush(tmp_path: Path, how: str) -> None:
    access_log = _log(tmp_path)
    path = Path(access_log.path or "")
    access_log.record(_call(path="/one"), 100.1)
    access_log.flush()
    if how == "moved":
        path.rename(path.with_name("access.log.1"))
        assert json.loads(path.with_name("access.log.1").read_text())["uri"] == "/one"
    else:
        path.unlink()
    access_log.record(_call(path="/two"), 100.1)
    access_log.flush()
    assert json.loads(path.read_text())["uri"] == "/two"
    access_log.record(_call(path="/three"), 100.1)
    access_log.flush()
    assert [json.loads(line)["uri"] for line in path.read_text().splitlines()] == ["/two", "/three"]


def test_a_file_that_cannot_be_reopened_drops_lines_and_counts_them(tmp_path: Path) -> None:
    access_log = _log(tmp_path)
    path = Path(access_log.path or "")
    access_log.record(_call(), 100.1)
    access_log.flush()
    path.unlink()
    path.mkdir()  # the path now names a folder: the reopen fails (as root too)
    access_log.record(_call(), 100.1)
    access_log.flush()
    assert (access_log.written, access_log.dropped, access_log.failing) == (1, 1, True)
    path.rmdir()
    access_log.record(_call(path="/again"), 100.1)
    access_log.flush()
    assert (access_log.written, access_log.failing) == (2, False)
    assert json.loads(path.read_text())["uri"] == "/again"


def test_every_byte_is_written_as_itself_or_escaped_as_a_plain_check_would() -> None:
    for byte in range(256):
        data = b"a" + bytes([byte]) + b"z"
        printable = 32 <= byte < 127 and byte not in (34, 92)
        assert json.loads(json_value(data, True)) == data.decode("latin-1")
        assert text_value(data, True) == (data if printable else b"a\\x%02Xz" % byte)
        bare = printable and byte != 32
        assert text_value(data, False) == (data if bare else b"a\\x%02Xz" % byte)
