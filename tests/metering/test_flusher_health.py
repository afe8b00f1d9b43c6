"""The flusher's loop never dies of an error: it counts it, backs off, measures the backlog, and recovers."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.metering.conftest import finished_call, open_ledger, write_calls
from tollway.config import Settings
from tollway.metering.backlog import Backlog
from tollway.metering.flusher import MAX_BACKOFF, Flusher
from tollway.metering.spool import SpoolReader, SpoolWriter
from tollway.store.db import Database


def test_a_failing_flush_is_counted_retried_later_and_its_backlog_measured(sqlite_settings: Settings) -> None:
    settings = sqlite_settings.with_overrides(billable_flush_interval=0.5)
    write_calls(settings, [finished_call(started_at=1_800_000_000 + i) for i in range(250)])

    async def main() -> None:
        db = await open_ledger(settings)
        try:
            flusher = Flusher(db, settings, "node-1")
            # a database without the ledger's tables: every flush fails
            empty = str(Path(settings.prefix) / "empty.db")
            broken = Database.from_settings(settings.with_overrides(sqlite_path=empty))
            flusher.db = broken
            delays = []
            for _ in range(5):
                await flusher.tick()
                delays.append(flusher.delay())
            assert flusher.failures == 5 and flusher.errors_total == 5
            assert "no such table" in (flusher.last_error or "")
            assert delays == [0.5, 1.0, 2.0, 4.0, MAX_BACKOFF]
            assert flusher.backlog.calls == 250 and flusher.backlog.oldest_ms == 1_800_000_000_000
            assert flusher.backlog.bytes > 250 * 50
            await broken.dispose()
            flusher.db = db
            await flusher.tick()
            assert flusher.failures == 0 and flusher.counted == 250 and flusher.backlog.calls == 0
            assert flusher.delay() == 0.5 and flusher.last_success_at is not None
        finally:
            await db.dispose()

    asyncio.run(main())


def test_the_backlog_counts_only_what_was_appended_since_the_committed_offset(tmp_path: Path) -> None:
    writer = SpoolWriter(tmp_path, "w1")
    backlog = Backlog()
    for i in range(10):
        writer.append(finished_call(started_at=1_800_000_000 + i))
    reader = SpoolReader(tmp_path)
    first = backlog.measure(reader.files(), {})
    assert (first.calls, first.oldest_ms) == (10, 1_800_000_000_000)
    for i in range(10, 15):
        writer.append(finished_call(started_at=1_800_000_000 + i))
    assert backlog.measure(reader.files(), {}).calls == 15   # incremental: only the 5 new lines are read
    files = reader.files()
    committed = {files[0].name: first.bytes}                  # the first ten were committed meanwhile
    moved = backlog.measure(files, committed)
    assert (moved.calls, moved.oldest_ms) == (5, 1_800_000_010_000)
    writer.close()
