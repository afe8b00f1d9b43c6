"""The flusher: counts the spool into the ledger, exactly once, in the master process.

One flush reads every spool file from the offset committed for it in the database, sums the
complete lines, and commits the ledger upserts, the names and the new offsets in ONE transaction.
Whatever fails before the commit leaves the database as it was and the spool on disk, so the
next flush (or a restarted master) reads the same bytes again: nothing is lost or counted twice.
Offsets are read from the database at every flush, never trusted from memory.

Two flushers of one node id never count a byte twice: one flusher at a time holds a flock on the
spool directory, and each commit moves an offset only from the value that flush read (an UPDATE
... WHERE position = old, or an INSERT for a new file); when another flusher got there first (a
copied prefix), the transaction is rolled back and the spool read again.

After the commit, files that are finished and fully counted are deleted; their offset rows go
in a later flush's transaction (a file name is never reused, so a stale row is harmless).

In a node, `FlusherThread` runs the flusher on a thread of its own at a lower CPU priority than
the proxy workers (billable_flush_nice): counting usage never takes a core from a request.

A flush that fails for any reason (the database away, a file error, the master out of
descriptors) is logged, counted and tried again, sooner at first and then every MAX_BACKOFF
seconds; meanwhile the flusher measures what waits in the spool (tollway.metering.backlog), so
that GET /status shows the backlog and the age of its oldest call, and `tollway health` fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import sys
import threading
import time
from collections.abc import Callable

from tollway.config import Settings
from tollway.errors import StoreUnavailable
from tollway.metering import ledger
from tollway.metering.aggregate import UsageBatch
from tollway.metering.backlog import NONE_WAITING, Backlog
from tollway.metering.spool import DISK_ALARM_BYTES, SpoolFile, SpoolReader, disk_free
from tollway.store.db import Database

log = logging.getLogger(__name__)

PURGE_EVERY = 600.0          # seconds between retention passes
SPOOL_ALARM_RATIO = 0.8      # warn when the spool holds this share of billable_spool_max_bytes
ALARM_EVERY = 60.0           # seconds between two spool-size (or busy spool) warnings
ABANDONED_AFTER = 60.0       # seconds before an unlocked hidden spool file counts as abandoned
CONFLICT_RETRIES = 3         # flushes read again after an offset conflict before giving up this turn
MAX_BACKOFF = 5.0            # seconds between two attempts once flushes keep failing

_UNAVAILABLE = (*ledger.UNAVAILABLE, StoreUnavailable)


class Flusher:
    """Moves metered usage from this node's spool directory into the ledger."""

    def __init__(self, db: Database, settings: Settings, node_id: str,
                 writer_alive: Callable[[str], bool] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.settings = settings
        self.node_id = node_id
        self.reader = SpoolReader(settings.spool_dir, writer_alive)
        self.clock = clock
        self.counted = 0             # records counted since start
        self.cut_off = 0             # cut-off records skipped since start
        self._last_purge = float("-inf")
        self._last_alarm = float("-inf")
        self._last_busy = float("-inf")
        self._positions: dict[str, int] = {}  # spool file -> bytes counted, as of the last flush
        # Health, for GET /status (read from the master's thread: plain attribute reads)
        self.last_success_at: float | None = None
        self.failures = 0            # flushes failed in a row
        self.errors_total = 0        # flushes failed since start, and other errors of the loop
        self.last_error: str | None = None
        self.backlog = NONE_WAITING  # what waits in the spool, measured while flushes fail
        self.disk_free_bytes: int | None = None
        self._backlog = Backlog()
        self.skipped = False         # the last flush found another flusher at work (it skipped its turn)
        # Work done, for GET /metrics
        self.rows_committed = 0      # usage rows upserted into the ledger since start
        self.flushes = 0             # flushes done (successful or not)
        self.flush_seconds = 0.0     # their total duration
        self.last_flush_seconds: float | None = None

    async def flush_once(self) -> int:
        """Count every complete line not yet counted; the number of records counted.

        Only one flusher at a time works on a spool directory (a `flock` on it); another one
        skips its turn. Its commit is conditional on the offsets it read still being the ones in
        the database, so a copy of the spool flushed elsewhere under the same node id is never
        counted twice either: on a conflict it rolls back and reads again.
        Raises StoreUnavailable when the database cannot be reached (nothing is lost).
        """
        lock = self._lock()
        self.skipped = lock is None
        if lock is None:
            return 0
        try:
            for _attempt in range(CONFLICT_RETRIES):
                try:
                    return await self._flush_locked()
                except ledger.OffsetConflict as exc:
                    log.warning("billable: %s; another flusher with node id %s counted this spool "
                                "meanwhile; reading it again", exc, self.node_id)
            log.error("billable: the spool offsets of node %s keep changing under this flusher; is another "
                      "master flushing a copy of this spool with the same node_id?", self.node_id)
            return 0
        finally:
            os.close(lock)

    def _lock(self) -> int | None:
        """An exclusive flock on the spool directory (its descriptor), or None when another holds it."""
        spool_dir = self.reader.spool_dir
        spool_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(spool_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            now = time.monotonic()
            if now - self._last_busy >= ALARM_EVERY:
                self._last_busy = now
                log.error("billable: another flusher is flushing %s (two masters on one prefix?); this one "
                          "skips its turn", spool_dir)
            return None
        except BaseException:
            os.close(fd)
            raise
        return fd

    async def _flush_locked(self) -> int:
        files = self.reader.files()
        try:
            async with self.db.connect() as conn:
                committed = await ledger.load_offsets(conn, self.node_id)
            batch, offsets, cut_off = await asyncio.to_thread(self._collect, files, committed)
            on_disk = {file.name for file in files}
            gone = {name: position for name, position in committed.items() if name not in on_disk}
            if offsets or gone:
                self.rows_committed += await self._commit(batch, committed, offsets, gone)
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(f"cannot reach the database to flush usage: {ledger.describe(exc)}") from exc
        self.counted += batch.records
        self.cut_off += cut_off
        self._positions = {**committed, **offsets}
        self._delete_consumed(files, self._positions)
        return batch.records

    async def _commit(self, batch: UsageBatch, committed: dict[str, int], offsets: dict[str, int],
                      gone: dict[str, int]) -> int:
        """One transaction: usage, names, and offsets moved from `committed` (or OffsetConflict);
        the number of usage rows written."""
        rows = batch.usage_rows()
        async with self.db.begin() as conn:
            await ledger.add_usage(conn, rows)
            await ledger.add_latencies(conn, batch.latency_rows())
            await ledger.remember_names(conn, batch.name_rows())
            await ledger.move_offsets(conn, self.node_id, {name: (committed.get(name), position)
                                                           for name, position in offsets.items()})
            await ledger.forget_offsets(conn, self.node_id, gone)
        return len(rows)

    def _collect(self, files: list[SpoolFile],
                 committed: dict[str, int]) -> tuple[UsageBatch, dict[str, int], int]:
        """Sum the lines after each committed offset; (batch, new offsets, cut-off records)."""
        batch = UsageBatch()
        offsets: dict[str, int] = {}
        cut_off = 0
        for file in files:
            start = committed.get(file.name, 0)
            if start > file.size:
                log.error("usage spool %s is shorter (%d bytes) than its committed offset %d; "
                          "was it truncated? leaving it alone", file.name, file.size, start)
                continue
            for chunk in self.reader.read(file, start):
                batch.add_lines(chunk.lines, file.name)
                cut_off += 1 if chunk.cut_off else 0
                offsets[file.name] = chunk.end
        return batch, offsets, cut_off

    def _delete_consumed(self, files: list[SpoolFile], offsets: dict[str, int]) -> None:
        for file in files:
            if file.finished and offsets.get(file.name, 0) >= file.size:
                try:
                    file.path.unlink()
                except FileNotFoundError:
                    pass
        # A writer killed while opening its next file leaves it under its hidden name, empty.
        for path in self.reader.abandoned(older_than=time.time() - ABANDONED_AFTER):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    async def purge_expired(self) -> int:
        """Apply billable_minute_retention and billable_hour_retention; rows deleted."""
        try:
            async with self.db.begin() as conn:
                deleted = await ledger.purge_expired(conn, self.clock(), self.settings.billable_minute_retention,
                                                     self.settings.billable_hour_retention)
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(f"cannot reach the database to purge old usage: {ledger.describe(exc)}") from exc
        if deleted:
            log.info("billable: deleted %d usage rows past their retention", deleted)
        return deleted

    def spool_bytes(self) -> int:
        """Bytes of usage the spool holds: whole files once finished, and what was counted of the
        ones still written to (they are allocated in full when opened, so their size says nothing)."""
        return sum(file.size if file.finished else self._positions.get(file.name, 0) for file in self.reader.files())

    def check_spool_size(self) -> int:
        """spool_bytes(); warns loudly (once a minute) when it nears the alarm size, or when the
        disk under the spool nears full (a worker then records into smaller files, then none)."""
        size = self.spool_bytes()
        limit = self.settings.billable_spool_max_bytes
        self.disk_free_bytes = free = disk_free(self.settings.spool_dir)
        now = time.monotonic()
        if now - self._last_alarm < ALARM_EVERY:
            return size
        if size >= limit * SPOOL_ALARM_RATIO:
            self._last_alarm = now
            log.error("USAGE SPOOL IS FILLING UP: %s holds %d bytes (billable_spool_max_bytes = %d); "
                      "usage is not reaching the database. The proxy keeps serving and metering.",
                      self.settings.spool_dir, size, limit)
        elif free is not None and free < DISK_ALARM_BYTES:
            self._last_alarm = now
            log.error("DISK NEARLY FULL UNDER THE USAGE SPOOL: %d bytes free in %s; when it is full, calls "
                      "are served unmetered (billable_spool_failure = serve) or refused (refuse)",
                      free, self.settings.spool_dir)
        return size

    @property
    def disk_alarm(self) -> bool:
        return self.disk_free_bytes is not None and self.disk_free_bytes < DISK_ALARM_BYTES

    async def tick(self) -> None:
        """One turn of the loop: flush, purge now and then, check the spool's size and disk.

        Nothing escapes: every error is logged, counted and shown, and the next turn tries again.
        """
        began = time.monotonic()
        try:
            await self.flush_once()
        except StoreUnavailable as exc:
            self._failed(str(exc))
            log.warning("metering: %s; usage stays in the spool and will be retried", exc)
        except Exception as exc:
            self._failed(f"{type(exc).__name__}: {exc}")
            log.exception("metering: flushing usage failed; usage stays in the spool and will be retried")
        else:
            if self.skipped:
                self._failed(f"another flusher is flushing {self.reader.spool_dir}")
            else:
                self.failures = 0
                self.last_success_at = self.clock()
                self.backlog = NONE_WAITING
        finally:
            self.last_flush_seconds = time.monotonic() - began
            self.flush_seconds += self.last_flush_seconds
            self.flushes += 1
        try:
            if self.failures:
                self.backlog = await asyncio.to_thread(self._backlog.measure, self.reader.files(), self._positions)
            elif self.clock() - self._last_purge >= PURGE_EVERY:
                await self.purge_expired()
                self._last_purge = self.clock()
            self.check_spool_size()
        except StoreUnavailable as exc:
            self.errors_total += 1
            self.last_error = str(exc)
            log.warning("metering: %s; retried later", exc)
        except Exception as exc:
            self.errors_total += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.exception("metering: checking the spool failed")

    def _failed(self, reason: str) -> None:
        self.failures += 1
        self.errors_total += 1
        self.last_error = reason

    def delay(self) -> float:
        """Seconds until the next turn: the flush interval, longer while flushes keep failing."""
        interval = self.settings.billable_flush_interval
        if not self.failures:
            return interval
        return min(max(interval, MAX_BACKOFF), interval * 2 ** (self.failures - 1))

    async def run(self, stop: asyncio.Event) -> None:
        """Flush every billable_flush_interval seconds until `stop` is set, then once more."""
        while not stop.is_set():
            await self.tick()
            try:
                await asyncio.wait_for(stop.wait(), self.delay())
            except TimeoutError:
                pass
        await self.tick()


class FlusherThread:
    """Runs a Flusher on a thread of its own, with its own event loop and database engine, at the
    CPU priority billable_flush_nice.

    Counting usage is background work; on a busy machine it must not take a core from a worker
    while requests wait (measured: at full load on 2 cores, flushing at the workers' priority adds
    about 0.6 ms to their p99; see the README's Performance section). On Linux a nice value
    belongs to a thread and is inherited by the threads it starts, so the whole flush runs at it:
    the spool reading (the executor's threads), the SQL (aiosqlite's thread, or asyncpg on this
    thread's loop) and the bookkeeping. Whenever a core is idle the flusher runs at once; only
    under CPU saturation does the ledger lag, and the spool holds what is not counted yet
    (billable_spool_max_bytes raises the alarm). billable_flush_nice = 0 flushes as an equal.

    The master reads `flusher`'s counters (`counted`, `cut_off`, `spool_bytes()`) from its own
    thread: plain attribute reads.
    """

    def __init__(self, settings: Settings, node_id: str,
                 writer_alive: Callable[[str], bool] | None = None) -> None:
        self.settings = settings
        # One connection is all a flusher uses at a time.
        self.db = Database.from_settings(settings.with_overrides(pg_pool_size=1))
        self.flusher = Flusher(self.db, settings, node_id, writer_alive)
        self.nice: int | None = None  # the thread's nice value once it runs
        self._thread = threading.Thread(target=self._main, name="tollway-flusher", daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._stop_requested = False

    def start(self) -> None:
        self._thread.start()

    @property
    def alive(self) -> bool:
        """Whether the thread runs (False once it ended, by stop() or by a failure)."""
        return self._thread.is_alive()

    async def stop(self, timeout: float) -> None:
        """Flush once more and end the thread; TimeoutError when that takes longer than `timeout`."""
        self._stop_requested = True
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                loop.call_soon_threadsafe(stop.set)
        await asyncio.to_thread(self._thread.join, timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"the usage flusher did not finish within {timeout:g} s")

    def _main(self) -> None:
        self.nice = lower_thread_priority(self.settings.billable_flush_nice)
        try:
            asyncio.run(self._run())
        except Exception:
            log.exception("billable: the usage flusher stopped; usage stays in the spool for the next start")

    async def _run(self) -> None:
        stop = asyncio.Event()
        self._stop = stop
        self._loop = asyncio.get_running_loop()
        if self._stop_requested:  # stop() ran before this loop existed
            stop.set()
        try:
            await self.flusher.run(stop)
        finally:
            await self.db.dispose()


def lower_thread_priority(nice: int) -> int | None:
    """Set the calling thread's nice value to `nice` when that lowers its priority (an unprivileged
    thread cannot raise it). Linux only, where nice is per thread; the thread's nice value after,
    or None where threads have none of their own."""
    if not sys.platform.startswith("linux"):
        return None
    tid = threading.get_native_id()
    try:
        if nice > os.getpriority(os.PRIO_PROCESS, tid):
            os.setpriority(os.PRIO_PROCESS, tid, nice)
        return os.getpriority(os.PRIO_PROCESS, tid)
    except OSError as exc:
        log.warning("billable: could not set the flusher's CPU priority to nice %d: %s", nice, exc.strerror)
        return None
