"""The flusher counts every complete spool line exactly once, whatever fails and whenever."""

from __future__ import annotations

import asyncio
import dataclasses
import fcntl
import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from tests.conftest import make_settings
from tests.metering.conftest import ALICE, BOB, at, finished_call, open_ledger, with_ledger, write_calls
from tollway.config import Settings
from tollway.errors import StoreUnavailable
from tollway.metering import flusher as flusher_module
from tollway.metering.flusher import Flusher, FlusherThread
from tollway.metering.spool import SpoolReader, SpoolWriter
from tollway.metering.tables import names, spool_offsets, usage
from tollway.store.db import Database


async def totals(db: Database, grain: str = "minute") -> dict[str, int]:
    """Requests per consumer id at one grain."""
    async with db.engine.connect() as conn:
        rows = await conn.execute(select(usage.c.consumer_id, func.sum(usage.c.requests))
                                  .where(usage.c.grain == grain).group_by(usage.c.consumer_id))
        return {consumer: int(n) for consumer, n in rows}


async def offset_rows(db: Database) -> int:
    async with db.engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(spool_offsets))).scalar_one())


def test_flush_counts_exact_totals_in_every_grain(settings: Settings) -> None:
    start = at("2028-02-29T23:59:30+00:00")
    calls = ([finished_call(started_at=start + i, request_bytes=10, response_bytes=20) for i in range(60)]
             + [finished_call(started_at=start, consumer=BOB, status=500) for _ in range(7)]
             + [finished_call(started_at=start, consumer=None, status=401) for _ in range(5)])
    write_calls(settings, calls)

    async def body(db: Database) -> None:
        assert await Flusher(db, settings, "node-1").flush_once() == 72
        for grain in ("minute", "hour", "day", "month"):
            assert await totals(db, grain) == {ALICE["id"]: 60, BOB["id"]: 7, "": 5}
        async with db.engine.connect() as conn:
            rows = (await conn.execute(
                select(usage.c.bucket_start, usage.c.requests, usage.c.request_bytes, usage.c.response_bytes)
                .where(usage.c.grain == "month", usage.c.consumer_id == ALICE["id"])
                .order_by(usage.c.bucket_start))).all()
        # Leap day 2028-02-29 23:59:30 + 60 s straddles February and March.
        assert [tuple(r) for r in rows] == [(int(at("2028-02-01T00:00:00+00:00")), 30, 300, 600),
                                            (int(at("2028-03-01T00:00:00+00:00")), 30, 300, 600)]
        assert not list(settings.spool_dir.iterdir())  # finished and counted: deleted

    with_ledger(settings, body)


def test_flushing_twice_or_after_a_restart_never_counts_twice(settings: Settings) -> None:
    writer = SpoolWriter(settings.spool_dir, "w1")  # stays open: its file is not finished
    for i in range(10):
        writer.append(finished_call(started_at=at("2028-01-01T00:00:00+00:00") + i))

    async def body(db: Database) -> None:
        first = Flusher(db, settings, "node-1")
        assert await first.flush_once() == 10
        assert await first.flush_once() == 0
        assert await Flusher(db, settings, "node-1").flush_once() == 0  # a restarted master
        writer.append(finished_call(started_at=at("2028-01-01T00:00:00+00:00")))
        assert await Flusher(db, settings, "node-1").flush_once() == 1
        assert await totals(db) == {ALICE["id"]: 11}
        assert len(list(settings.spool_dir.iterdir())) == 1  # still being written: kept
        writer.close()
        assert await first.flush_once() == 0
        assert not list(settings.spool_dir.iterdir())
        assert await first.flush_once() == 0
        assert await offset_rows(db) == 0  # the deleted file's offset row went in a later flush

    with_ledger(settings, body)


@pytest.mark.parametrize("failing", ["remember_names", "move_offsets", "forget_offsets"])
def test_a_failure_inside_the_transaction_counts_nothing_and_the_retry_counts_once(
        settings: Settings, monkeypatch: pytest.MonkeyPatch, failing: str) -> None:
    write_calls(settings, [finished_call(started_at=at("2028-01-01T00:00:00+00:00")) for _ in range(25)])
    real = getattr(flusher_module.ledger, failing)

    async def broken(*args: Any) -> None:
        await real(*args)  # the statement runs, then the transaction dies
        raise RuntimeError("crash after " + failing)

    async def body(db: Database) -> None:
        flusher = Flusher(db, settings, "node-1")
        monkeypatch.setattr(flusher_module.ledger, failing, broken)
        with pytest.raises(RuntimeError):
            await flusher.flush_once()
        assert await totals(db) == {}
        assert len(list(settings.spool_dir.iterdir())) == 1
        monkeypatch.setattr(flusher_module.ledger, failing, real)
        assert await flusher.flush_once() == 25
        assert await totals(db) == {ALICE["id"]: 25}
        assert await flusher.flush_once() == 0

    with_ledger(settings, body)


def test_names_keep_the_last_known_name(settings: Settings) -> None:
    renamed = {**ALICE, "username": "alice-2"}
    write_calls(settings, [finished_call(started_at=2_000_000_100.0, consumer=renamed),
                           finished_call(started_at=2_000_000_000.0)])

    async def body(db: Database) -> None:
        await Flusher(db, settings, "node-1").flush_once()
        write_calls(settings, [finished_call(started_at=1_900_000_000.0)])  # older than what is stored
        await Flusher(db, settings, "node-1").flush_once()
        async with db.engine.connect() as conn:
            row = (await conn.execute(select(names.c.name, names.c.custom_id)
                                      .where(names.c.kind == "consumer", names.c.id == ALICE["id"]))).one()
        assert tuple(row) == ("alice-2", "cust-a")

    with_ledger(settings, body)


CHILD = textwrap.dedent("""
    import sys, time
    from tests.metering.conftest import finished_call
    from tollway.metering.spool import SpoolWriter
    writer = SpoolWriter(sys.argv[1], "child", file_bytes=int(sys.argv[2]))
    consumer = {"id": "c1", "username": "u", "custom_id": None}
    route = {"id": "r1", "name": "r"}
    i = 0
    while True:
        writer.append(finished_call(time.time(), consumer=consumer, service=None, route=route, status=200,
                                    request_bytes=1, response_bytes=2))
        i += 1
        if i == 2000:
            print("ready", flush=True)
""")


def test_a_writer_killed_mid_stream_loses_nothing_it_wrote(settings: Settings) -> None:
    settings.spool_dir.mkdir(parents=True)
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(settings.spool_dir), str(256 * 1024)],
                             stdout=subprocess.PIPE, cwd=Path(__file__).resolve().parents[2])
    assert child.stdout is not None and child.stdout.readline() == b"ready\n"
    time.sleep(0.2)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    # Complete records: before the first byte never written (a copy cut by the kill may have
    # landed its newline before its middle).
    complete = sum(path.read_bytes().split(b"\0", 1)[0].count(b"\n") for path in settings.spool_dir.iterdir())
    assert complete >= 2000
    assert all(f.finished for f in SpoolReader(settings.spool_dir).files())  # the lock died with it

    async def body(db: Database) -> None:
        flusher = Flusher(db, settings, "node-1")
        assert await flusher.flush_once() == complete
        assert await totals(db) == {"c1": complete}
        # Killed while opening its next file, a writer leaves it under its hidden name, never
        # written: deleted once abandoned for ABANDONED_AFTER.
        assert [path.name for path in settings.spool_dir.iterdir() if not path.name.endswith(".new")] == []

    with_ledger(settings, body)


def test_usage_stays_on_disk_while_the_database_is_down_and_lands_when_it_is_back(
        settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_calls(settings, [finished_call(started_at=at("2028-01-01T00:00:00+00:00")) for _ in range(40)])
    if settings.database == "postgres":
        from tests.conftest import free_port
        down = settings.with_overrides(pg_port=free_port(), pg_timeout=1.0)
    else:
        down = settings.with_overrides(sqlite_path=str(tmp_path / "missing-dir" / "x" / "tollway.db"))

    async def main() -> None:
        bad = Database.from_settings(down) if settings.database == "postgres" else None
        if bad is None:  # a SQLite file that cannot be opened: its directory vanished
            (tmp_path / "missing-dir" / "x").mkdir(parents=True)
            bad = Database.from_settings(down)
            (tmp_path / "missing-dir" / "x").rmdir()
        flusher = Flusher(bad, settings, "node-1")
        with pytest.raises(StoreUnavailable):
            await flusher.flush_once()
        stop = asyncio.Event()
        stop.set()
        with caplog.at_level(logging.WARNING):
            await flusher.run(stop)  # logs, keeps the spool, does not raise
        assert "usage stays in the spool" in caplog.text
        assert len(list(settings.spool_dir.iterdir())) == 1
        await bad.dispose()
        db = await open_ledger(settings)
        try:
            flusher.db = db  # the database is back
            await flusher.run(stop)
            assert await totals(db) == {ALICE["id"]: 40}
            assert not list(settings.spool_dir.iterdir())
        finally:
            await db.dispose()

    asyncio.run(main())


def test_run_flushes_periodically_and_once_more_at_stop(settings: Settings) -> None:
    async def body(db: Database) -> None:
        flusher = Flusher(db, settings, "node-1")
        stop = asyncio.Event()
        task = asyncio.create_task(flusher.run(stop))
        with SpoolWriter(settings.spool_dir, "w1") as writer:
            writer.append(finished_call(started_at=at("2028-01-01T00:00:00+00:00")))
            for _ in range(50):
                await asyncio.sleep(0.1)
                if flusher.counted:
                    break
            assert flusher.counted == 1
            writer.append(finished_call(started_at=at("2028-01-01T00:00:00+00:00")))
            stop.set()
            await task
        assert await totals(db) == {ALICE["id"]: 2}

    with_ledger(settings, body)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a nice value per thread is Linux's")
def test_the_flusher_thread_counts_at_its_own_low_priority_and_once_more_at_stop(settings: Settings) -> None:
    settings = settings.with_overrides(billable_flush_nice=19)
    before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    moment = at("2028-01-01T00:00:00+00:00")

    async def body(db: Database) -> None:
        runner = FlusherThread(settings, "node-1")
        runner.start()
        try:
            with SpoolWriter(settings.spool_dir, "w1") as writer:
                writer.append(finished_call(started_at=moment))
                for _ in range(100):
                    await asyncio.sleep(0.05)
                    if runner.flusher.counted:
                        break
                assert runner.flusher.counted == 1
                assert runner.nice == 19
                # The thread it started to read the spool runs at its priority too; this one does not.
                nices = [os.getpriority(os.PRIO_PROCESS, int(tid)) for tid in os.listdir("/proc/self/task")]
                assert nices.count(19) >= 2
                assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == before
                writer.append(finished_call(started_at=moment))
                await runner.stop(timeout=30)
        finally:
            await runner.stop(timeout=30)
        assert await totals(db) == {ALICE["id"]: 2}

    with_ledger(settings, body)


def test_stopping_the_flusher_thread_before_it_ran_still_flushes(settings: Settings) -> None:
    write_calls(settings, [finished_call(started_at=at("2028-01-01T00:00:00+00:00")) for _ in range(3)])

    async def body(db: Database) -> None:
        runner = FlusherThread(settings, "node-1")
        runner.start()
        await runner.stop(timeout=30)  # at once: the thread's loop may not exist yet
        assert runner.flusher.counted == 3
        assert await totals(db) == {ALICE["id"]: 3}

    with_ledger(settings, body)


def test_retention_drops_old_minute_and_hour_rows_only(settings: Settings) -> None:
    now = at("2028-06-01T00:00:00+00:00")
    write_calls(settings, [finished_call(started_at=now - 10 * 86_400), finished_call(started_at=now - 500 * 86_400),
                           finished_call(started_at=now - 3600)])

    async def body(db: Database) -> None:
        flusher = Flusher(db, settings, "node-1", clock=lambda: now)
        await flusher.flush_once()
        # 2 minute rows (> 7 days), 1 hour row (> 400 days), and as many rollup and latency histogram rows
        assert await flusher.purge_expired() == 9
        assert sum((await totals(db, "minute")).values()) == 1
        assert sum((await totals(db, "hour")).values()) == 2
        assert sum((await totals(db, "day")).values()) == 3
        assert sum((await totals(db, "month")).values()) == 3

    with_ledger(settings, body)


def test_spool_size_alarm_is_loud(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = make_settings(tmp_path, "sqlite", billable_spool_max_bytes=str(1 << 20))
    flusher = Flusher(Database.from_settings(settings), settings, "n")
    live = SpoolWriter(settings.spool_dir, "live")  # allocated in full, nothing recorded: no alarm
    with caplog.at_level(logging.ERROR):
        assert flusher.check_spool_size() == 0
    assert "USAGE SPOOL IS FILLING UP" not in caplog.text
    live.close()
    write_calls(settings, [finished_call(started_at=1.0) for _ in range(10)])  # finished files, never flushed
    with caplog.at_level(logging.ERROR):
        size = flusher.check_spool_size()
    assert size == sum(path.stat().st_size for path in settings.spool_dir.glob("*.spool")) > 1 << 20
    assert "USAGE SPOOL IS FILLING UP" in caplog.text


def test_a_second_flusher_on_the_same_spool_waits_its_turn(settings: Settings,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    write_calls(settings, [finished_call(started_at=at("2028-01-01T00:00:00+00:00")) for _ in range(12)])
    other_master = os.open(settings.spool_dir, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(other_master, fcntl.LOCK_EX)  # another master's flusher is mid-flush

    async def body(db: Database) -> None:
        flusher = Flusher(db, settings, "node-1")
        with caplog.at_level(logging.ERROR, "tollway.metering.flusher"):
            assert await flusher.flush_once() == 0
        assert "another flusher is flushing" in caplog.text
        assert await totals(db) == {}
        os.close(other_master)
        assert await flusher.flush_once() == 12
        assert await totals(db) == {ALICE["id"]: 12}

    with_ledger(settings, body)


def test_a_copied_spool_flushed_under_the_same_node_id_is_counted_once(settings: Settings, tmp_path: Path) -> None:
    write_calls(settings, [finished_call(started_at=at("2028-01-01T00:00:00+00:00")) for _ in range(30)])
    copy = dataclasses.replace(settings, prefix=str(tmp_path / "copy"))  # another prefix, the same database
    shutil.copytree(settings.spool_dir, copy.spool_dir)

    async def body(db: Database) -> None:
        rival = Flusher(db, copy, "node-1")
        raced: list[int] = []

        class Racing(Flusher):
            async def _commit(self, *args: Any) -> None:
                if not raced:  # the rival commits between this flush's read and its commit
                    raced.append(await rival.flush_once())
                await super()._commit(*args)

        assert await Racing(db, settings, "node-1").flush_once() == 0  # rolled back, read again: nothing new
        assert raced == [30]
        assert await totals(db) == {ALICE["id"]: 30}
        assert await totals(db, "month") == {ALICE["id"]: 30}
        assert not list(settings.spool_dir.iterdir()) and not list(copy.spool_dir.iterdir())

    with_ledger(settings, body)
