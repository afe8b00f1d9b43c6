"""The usage spool: files a worker records one line per call into, and the flusher reads.

A file is named `<writer_id>.<session>.<seq>.spool`: `session` is the writer's start time in
hex nanoseconds (so a name is never reused, and neither is its offset row in the database) and
`seq` counts the writer's files. A writer holds an exclusive `flock` on the file it records into;
the kernel drops the lock when the writer closes it or dies, even by `kill -9`.

A writer allocates each file in full when it opens it and records by copying lines into a shared
memory mapping of it, so the bytes not written yet are NUL, which no record holds: a reader takes
the complete lines before the first NUL. (Files written by older versions, appended to with
write(2), have no NUL and are read to their end.)

A file is *finished* when no more bytes can arrive: a later file of the same writer exists, or
no writer holds its lock (or, when the flusher is told, the writer is not alive). Only a finished
file may be deleted, and only a finished file's incomplete last line counts as cut off.

An empty line is not a record; readers skip it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import mmap
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from tollway.metering.spool_line import LineEncoder

if TYPE_CHECKING:
    from tollway.proxy.call import Call

log = logging.getLogger(__name__)

SUFFIX: Final = ".spool"
FILE_BYTES: Final = 16 << 20  # each spool file is allocated at this size (more when one record is longer),
MIN_FILE_BYTES: Final = 64 << 10  # ... or smaller, down to this, when the disk has less room (DISK_SHARE)
DISK_SHARE: Final = 8          # a new file takes at most this fraction of the free disk
DISK_ALARM_BYTES: Final = 64 << 20  # free disk under the spool below which the flusher raises the alarm
MAX_RECORD: Final = 4096       # bytes a record can take: ids, names of at most 255 characters (escaped), numbers
RELEASE_EVERY: Final = 1 << 20  # recorded pages are unmapped from the writer every this many bytes
_NOT_NUL = re.compile(rb"[^\x00]")  # the end of a hole: bytes never recorded are NUL
READ_CHUNK = 64 << 10   # bytes read at a time: below glibc's mmap threshold, so buffers are reused, not faulted in anew
PROBE_EVERY = 1.0      # seconds between two attempts to open a file again while the spool is failing
ALARM_EVERY = 10.0     # seconds between two 'spool cannot be written' errors in the log


def disk_free(path: Path) -> int | None:
    """Bytes an unprivileged writer may still allocate on the filesystem of `path`, or None."""
    try:
        stat = os.statvfs(path)
    except OSError:
        return None
    return stat.f_bavail * stat.f_frsize


def file_size(spool_dir: Path, wanted: int) -> int:
    """The size of a new spool file: `wanted`, or less when the disk has less room (a spool that
    fits keeps metering on a small disk), but at least MIN_FILE_BYTES."""
    free = disk_free(spool_dir)
    if free is None:
        return wanted
    return min(wanted, max(MIN_FILE_BYTES, free // DISK_SHARE // mmap.PAGESIZE * mmap.PAGESIZE))


def _check_writer_id(writer_id: str) -> str:
    if not writer_id or any(ch in writer_id for ch in "./\\\0\n") or writer_id.startswith("-"):
        raise ValueError(f"writer id must be a non-empty name without '.', '/' or newlines: {writer_id!r}")
    return writer_id


class SpoolWriter:
    """Records one usage line per call into this writer's current spool file; opens the next when it is full.

    `append()` is the proxy's hot path: one encode and one copy into the file's memory mapping, no
    system call. The copy lands in the kernel's page cache at once, so a process killed by
    `kill -9` loses nothing it recorded; as with write(2), nothing is fsynced. The file's blocks are
    allocated when it is opened (posix_fallocate), so on filesystems that write in place (ext4,
    xfs) a full disk cannot fail a copy into it; it fails the opening of the next file. On
    copy-on-write filesystems (btrfs, ZFS) or NFS a copy can still need space, and a full disk
    there kills the worker (SIGBUS; the master restarts it): keep the prefix on ext4 or xfs.
    Pages already recorded are unmapped from the writer as it goes (RELEASE_EVERY), so its resident
    memory does not grow with the file.

    When the next file cannot be opened (ENOSPC, EFBIG, EROFS, EACCES, ...) the writer is
    `failing`: the call is counted in `dropped`, a loud error is logged (at most every ALARM_EVERY
    seconds), and no other file is tried until `recover()` probes again, at most once per
    PROBE_EVERY seconds. billable_spool_failure (the billable handler) decides whether calls are
    served meanwhile.

    With billable_spool_failure = refuse, no call may be served that is not recorded, so a call is
    only let through (`admit()`) when the room left in the current file and in a standby file
    (allocated ahead, hidden and locked until it becomes current) holds a record for it and for
    every call admitted before it and not recorded yet: a full disk then refuses calls before
    they are served, never records them short after.
    """

    def __init__(self, spool_dir: Path | str, writer_id: str, file_bytes: int = FILE_BYTES,
                 clock: Callable[[], float] = time.monotonic, open_now: bool = True) -> None:
        self.spool_dir = Path(spool_dir)
        self.writer_id = _check_writer_id(writer_id)
        self.file_bytes = file_bytes
        self.clock = clock
        self._wall_clock: Callable[[], float] = time.time  # bound once: a call, not a module attribute lookup
        # Health, for the handler and GET /status
        self.failing = False         # the last file could not be opened; nothing is recorded until recover()
        self._encoder = LineEncoder()
        self.dropped = 0             # calls served but not recorded (the spool failed)
        self.refused = 0             # calls answered 503 by billable_spool_failure = refuse
        self.last_error: str | None = None
        self._failed_at = 0.0
        self._retry_at = 0.0
        self._alarm_at = float("-inf")
        self._dropped_before = 0     # `dropped` when the current failure began
        # The current file
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        self._session = f"{time.time_ns():016x}"
        self._seq = 0
        self._fd = -1
        self._map: mmap.mmap | None = None
        self._pos = 0                # bytes recorded in the current file
        self._room = 0               # its size: a record must end at or before it
        self._released = 0           # bytes of it unmapped from this process
        # The standby file (refuse mode): allocated, hidden and locked, the next file once this one is full
        self._standby: tuple[int, mmap.mmap, int, Path] | None = None  # (fd, mapping, size, hidden path)
        self.admitted = 0            # calls admit() let through whose records are not appended yet
        self._standby_retry_at = 0.0
        if open_now:
            self.start()

    def start(self) -> None:
        """Open the first file now, unless one is open (else the first append opens it)."""
        if self._map is not None or self.failing:
            return
        try:
            self._open_next(0)
        except OSError as exc:  # no room for a first file: serve per billable_spool_failure, probe again
            self._failed(exc)

    @property
    def path(self) -> Path:
        """The file being recorded into."""
        return self.spool_dir / self._name(self._seq)

    @property
    def recorded_bytes(self) -> int:
        """Bytes recorded in the current file."""
        return self._pos

    def _name(self, seq: int) -> str:
        return f"{self.writer_id}.{self._session}.{seq:06d}{SUFFIX}"

    def _allocate(self, seq: int, size: int) -> tuple[int, mmap.mmap, int, Path]:
        """A file of `size` bytes for `seq`, locked, allocated and mapped under a hidden name: the
        flusher never sees a spool file unlocked, or short of its blocks."""
        hidden = self.spool_dir / f".{self._name(seq)}.new"
        fd = os.open(hidden, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.posix_fallocate(fd, 0, size)
            return fd, mmap.mmap(fd, size), size, hidden
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(hidden)
            raise

    def _open_next(self, record_bytes: int) -> None:
        seq = self._seq + 1
        standby, self._standby = self._standby, None
        if standby is not None and standby[2] < record_bytes:
            self._discard(standby)
            standby = None
        if standby is None:
            standby = self._allocate(seq, max(file_size(self.spool_dir, self.file_bytes), record_bytes))
        fd, mapping, size, hidden = standby
        try:
            os.rename(hidden, self.spool_dir / self._name(seq))
        except BaseException:
            self._discard(standby)
            raise
        old_map, old_fd = self._map, self._fd
        self._map, self._fd, self._seq = mapping, fd, seq
        self._pos, self._room, self._released = 0, size, 0
        if old_map is not None:
            old_map.close()
        if old_fd >= 0:
            os.close(old_fd)

    def append(self, call: Call) -> None:
        """Record one finished call (the proxy's Call: plugins.base.Call, with its fields compiled)."""
        data = self._encoder.encode(call, self._wall_clock())
        end = self._pos + len(data)
        if end > self._room or self.failing:
            if not self._next_file(len(data)):
                self.dropped += 1
                return
            end = len(data)
        # At the mapping's own position, which follows _pos: it is written nowhere else, and a new
        # file's mapping starts at 0 (a method call costs less than a slice assignment).
        self._map.write(data)  # type: ignore[union-attr]
        self._pos = end
        if end - self._released >= RELEASE_EVERY:
            self._release()

    @staticmethod
    def _discard(file: tuple[int, mmap.mmap, int, Path]) -> None:
        fd, mapping, _size, hidden = file
        mapping.close()
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(hidden)

    def admit(self) -> bool:
        """Whether one more call is sure to be recorded (see the class docstring); it then counts
        in `admitted` until `recorded()`. False when no room can be made for it now."""
        need = (self.admitted + 1) * MAX_RECORD
        standby = self._standby[2] if self._standby is not None else 0
        if self._room - self._pos + standby < need and not self._prepare_standby(need):
            return False
        self.admitted += 1
        return True

    def recorded(self) -> None:
        """An admitted call's record was appended (or its call will never be recorded)."""
        if self.admitted > 0:
            self.admitted -= 1

    def _prepare_standby(self, need: int) -> bool:
        """Make room for `need` bytes beyond the current file's: open the first file, or allocate
        a standby file; after a failure, try again at most once per PROBE_EVERY. A standby that
        cannot be allocated does not stop the current file from recording what it has room for."""
        if self.failing:
            return self.recover() and self._room - self._pos >= need
        now = self.clock()
        if now < self._standby_retry_at:
            return False
        if self._map is None:  # nothing opened yet: the first file is the current one
            self.start()
            if self.failing or self._room >= need:
                return not self.failing
        if self._standby is not None:
            self._discard(self._standby)
            self._standby = None
        try:
            self._standby = self._allocate(self._seq + 1, max(file_size(self.spool_dir, self.file_bytes), need))
        except OSError as exc:
            self._standby_retry_at = now + PROBE_EVERY
            self.last_error = f"{errno.errorcode.get(exc.errno or 0, 'error')}: {exc.strerror}"
            if now - self._alarm_at >= ALARM_EVERY:
                self._alarm_at = now
                log.error("USAGE SPOOL NEARLY FULL: no room for a standby file in %s (%s); calls are refused "
                          "(billable_spool_failure = refuse) until there is", self.spool_dir, self.last_error)
            return False
        return True

    def _next_file(self, record_bytes: int) -> bool:
        if self.failing:
            return self.recover(record_bytes)
        try:
            self._open_next(record_bytes)
        except OSError as exc:
            self._failed(exc)
            return False
        return True

    def _release(self) -> None:
        """Unmap the pages recorded so far: they stay in the page cache, out of this process's RSS."""
        done = self._pos - self._pos % mmap.PAGESIZE
        if done > self._released and self._map is not None:
            with contextlib.suppress(OSError):
                self._map.madvise(mmap.MADV_DONTNEED, self._released, done - self._released)
            self._released = done

    def recover(self, record_bytes: int = 0) -> bool:
        """While failing, try (at most once per PROBE_EVERY) to open a new file; whether the spool works.

        Cheap when it is not time to probe: one clock read.
        """
        if not self.failing:
            return True
        now = self.clock()
        if now < self._retry_at:
            return False
        self._retry_at = now + PROBE_EVERY
        try:
            self._open_next(record_bytes)
        except OSError as exc:
            self._failed(exc)
            return False
        self.failing = False
        self.last_error = None
        log.warning("usage spool %s is writable again after %.0f s; %d calls were served without being "
                    "metered meanwhile", self.path, now - self._failed_at, self.dropped - self._dropped_before)
        return True

    def _failed(self, exc: OSError) -> None:
        now = self.clock()
        if not self.failing:
            self.failing = True
            self._failed_at = now
            self._retry_at = now + PROBE_EVERY
            self._dropped_before = self.dropped
        self.last_error = f"{errno.errorcode.get(exc.errno or 0, 'error')}: {exc.strerror}"
        if now - self._alarm_at >= ALARM_EVERY:
            self._alarm_at = now
            log.error("USAGE SPOOL CANNOT BE WRITTEN: no new file in %s (%s); %d calls not metered so far; "
                      "retrying every %.0f s (billable_spool_failure decides whether calls are served or "
                      "refused meanwhile)", self.spool_dir, self.last_error, self.dropped, PROBE_EVERY)

    def close(self) -> None:
        """Close the current file; it is finished from now on."""
        if self._standby is not None:
            self._discard(self._standby)
            self._standby = None
        if self._map is not None:
            self._map.close()
            self._map = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._room = 0

    def __enter__(self) -> SpoolWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _lines(pending: bytes, data: bytes) -> tuple[list[bytes], bytes]:
    """The complete lines of `pending + data` (without their newlines), and what follows the last
    one; only the first line is copied to join them."""
    lines = data.split(b"\n")
    tail = lines.pop()
    if not lines:
        return lines, pending + tail
    if pending:
        lines[0] = pending + lines[0]
    return lines, tail


@dataclass(frozen=True)
class SpoolFile:
    """One spool file as the flusher found it (size and finished as of that moment)."""

    path: Path
    writer_id: str
    session: str
    seq: int
    size: int
    finished: bool

    @property
    def name(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class SpoolChunk:
    """Complete lines read from a file, and the offset just past the last of them."""

    lines: list[bytes]
    end: int
    cut_off: int = 0     # bytes of an unfinished last line skipped in a finished file


def _parse_name(name: str) -> tuple[str, str, int] | None:
    if not name.endswith(SUFFIX) or name.startswith("."):
        return None
    parts = name[: -len(SUFFIX)].split(".")
    if len(parts) != 3 or not parts[2].isdigit():
        return None
    return parts[0], parts[1], int(parts[2])


def writer_holds_lock(path: Path) -> bool:
    """True while a live SpoolWriter has `path` open (it holds the file's flock)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return True
        raise
    finally:
        os.close(fd)  # closing drops the probe's own lock
    return False


class SpoolReader:
    """Lists spool files and reads complete lines from them; never writes or deletes (the flusher does)."""

    def __init__(self, spool_dir: Path | str, writer_alive: Callable[[str], bool] | None = None) -> None:
        self.spool_dir = Path(spool_dir)
        self.writer_alive = writer_alive

    def files(self) -> list[SpoolFile]:
        """Every spool file, oldest first per writer, with its size and whether it is finished."""
        try:
            names = os.listdir(self.spool_dir)
        except FileNotFoundError:
            return []
        found: list[tuple[str, str, int, str]] = []
        for name in names:
            parsed = _parse_name(name)
            if parsed is not None:
                found.append((*parsed, name))
        found.sort()
        latest: dict[str, tuple[str, int]] = {}
        for writer_id, session, seq, _ in found:
            latest[writer_id] = max(latest.get(writer_id, ("", 0)), (session, seq))
        result = []
        for writer_id, session, seq, name in found:
            path = self.spool_dir / name
            # Decide "finished" BEFORE taking the size: a finished file can no longer grow.
            if (session, seq) < latest[writer_id]:
                finished = True
            elif self.writer_alive is not None:
                finished = not self.writer_alive(writer_id)
            else:
                finished = not writer_holds_lock(path)
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                continue
            result.append(SpoolFile(path, writer_id, session, seq, size, finished))
        return result

    def abandoned(self, older_than: float) -> list[Path]:
        """Hidden files of writers that died while opening them (unlocked, modified before `older_than`)."""
        try:
            names = os.listdir(self.spool_dir)
        except FileNotFoundError:
            return []
        found = []
        for name in names:
            if name.startswith(".") and name.endswith(SUFFIX + ".new"):
                path = self.spool_dir / name
                try:
                    if path.stat().st_mtime < older_than and not writer_holds_lock(path):
                        found.append(path)
                except FileNotFoundError:
                    continue
        return found

    def read(self, file: SpoolFile, offset: int, chunk_bytes: int = READ_CHUNK) -> Iterator[SpoolChunk]:
        """Complete lines of `file` from `offset`, within the size it was listed with, in chunks.

        A file still written to is read up to its first NUL (bytes not recorded yet); an incomplete
        last line there is left for a later read. In a finished file every NUL run is a hole: bytes
        never recorded (a writer that stopped), or never written back (pages lost in a machine
        crash, which can leave holes mid-file). The record a hole cuts into is skipped, with a
        warning, as cut off; reading goes on after it, and the last chunk ends at the file's size.
        """
        if offset >= file.size:
            return
        if file.finished:
            yield from self._read_finished(file, offset, chunk_bytes)
            return
        pending = b""
        for start, data in self._chunks(file, offset, chunk_bytes):
            unwritten = data.find(b"\0")
            if unwritten >= 0:
                data = data[:unwritten]
            lines, pending = _lines(pending, data)
            if lines:
                yield SpoolChunk(lines, start + len(data) - len(pending))
            if unwritten >= 0:
                break  # what follows is not recorded (yet)

    def _read_finished(self, file: SpoolFile, offset: int, chunk_bytes: int) -> Iterator[SpoolChunk]:
        pending = b""
        position = offset
        for start, data in self._chunks(file, offset, chunk_bytes):
            position = start + len(data)
            lines: list[bytes] = []
            at = 0  # where in `data` the bytes not taken yet begin
            while at < len(data):
                hole = data.find(b"\0", at)
                end = hole if hole >= 0 else len(data)
                if end > at:
                    more, pending = _lines(pending, data if at == 0 and end == len(data) else data[at:end])
                    lines += more
                if hole < 0:
                    break
                if pending:  # the hole cuts the record in progress off
                    yield self._cut_off(file, pending, start + hole)
                    pending = b""
                after = _NOT_NUL.search(data, hole)
                at = after.start() if after is not None else len(data)
            if lines:
                yield SpoolChunk(lines, position - len(pending))
        if pending:
            yield self._cut_off(file, pending, position)
        yield SpoolChunk([], file.size)

    @staticmethod
    def _chunks(file: SpoolFile, offset: int, chunk_bytes: int) -> Iterator[tuple[int, bytes]]:
        """(file offset, bytes) of `file` from `offset` up to the size it was listed with."""
        with open(file.path, "rb") as handle:
            handle.seek(offset)
            position = offset
            while position < file.size:
                data = handle.read(min(chunk_bytes, file.size - position))
                if not data:
                    return
                yield position, data
                position += len(data)

    @staticmethod
    def _cut_off(file: SpoolFile, fragment: bytes, end: int) -> SpoolChunk:
        log.warning("usage spool %s: skipping a cut-off record of %d bytes at offset %d (its writer stopped "
                    "mid-record, or the machine crashed before it reached the disk)", file.name, len(fragment),
                    end - len(fragment))
        return SpoolChunk([], end, cut_off=len(fragment))
