"""What the spool holds that the ledger does not yet: calls, bytes, and the oldest call's time.

While flushes fail (the database is away), the flusher measures its backlog with `Backlog`, so
that GET /status and `tollway health` say how much usage waits and for how long. A file's bytes
after its committed offset are scanned once: each measure reads only what was appended since the
last one (newlines counted, up to the first byte not recorded yet), and the first waiting line
gives the oldest call's time. A file whose committed offset moved is scanned again from there.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from tollway.metering.spool import READ_CHUNK, SpoolFile
from tollway.metering.spool_line import TIME_START


@dataclass(frozen=True)
class BacklogFigures:
    calls: int                   # complete lines waiting
    bytes: int                   # bytes of those lines
    oldest_ms: int | None        # the time of the oldest waiting call, epoch milliseconds


NONE_WAITING = BacklogFigures(0, 0, None)


@dataclass
class _Scan:
    start: int                   # the committed offset scanning began at
    end: int                     # just past the last complete line counted
    calls: int = 0
    oldest_ms: int | None = None


class Backlog:
    """Incremental counts of the spool's uncommitted lines (see the module docstring)."""

    def __init__(self) -> None:
        self._scans: dict[str, _Scan] = {}

    def measure(self, files: list[SpoolFile], committed: dict[str, int]) -> BacklogFigures:
        calls = size = 0
        oldest: int | None = None
        scans: dict[str, _Scan] = {}
        for file in files:
            start = committed.get(file.name, 0)
            scan = self._scans.get(file.name)
            if scan is None or scan.start != start:
                scan = _Scan(start, start)
            self._advance(file, scan)
            scans[file.name] = scan
            calls += scan.calls
            size += scan.end - scan.start
            if scan.oldest_ms is not None and (oldest is None or scan.oldest_ms < oldest):
                oldest = scan.oldest_ms
        self._scans = scans  # files gone (counted and deleted) are forgotten
        return BacklogFigures(calls, size, oldest)

    @staticmethod
    def _advance(file: SpoolFile, scan: _Scan) -> None:
        """Count the complete lines recorded after `scan.end`, up to the first NUL or the file's size."""
        try:
            fd = os.open(file.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return
        try:
            position = scan.end
            partial = b""
            while position + len(partial) < file.size:
                data = os.pread(fd, min(READ_CHUNK, file.size - position - len(partial)), position + len(partial))
                if not data:
                    break
                unwritten = data.find(b"\0")
                if unwritten >= 0:
                    data = data[:unwritten]
                data = partial + data
                last = data.rfind(b"\n")
                if last >= 0:
                    if scan.oldest_ms is None:
                        scan.oldest_ms = _time_of(data[: data.find(b"\n")])
                    scan.calls += data.count(b"\n", 0, last + 1)
                    position += last + 1
                    partial = data[last + 1:]
                else:
                    partial = data
                if unwritten >= 0:
                    break
            scan.end = position
        finally:
            os.close(fd)


def _time_of(line: bytes) -> int | None:
    """The time field of a spool line, or None when it has none."""
    fields = line[TIME_START:].split(b"\t", 1)
    return int(fields[0]) if fields[0].isdigit() else None
