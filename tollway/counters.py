"""Exact counters shared by the workers of one node, with no database and no network on the way.

`SharedCounters` is a hash table in a file of the prefix (PREFIX/shared_counters), mapped by every
worker. An operation takes the table's lock, reads and writes the slots it needs, and releases the
lock, so no other process sees a half-done operation. The lock is a robust, process-shared mutex
in the file's header, taken and released by the C operations of tollway/_counters.c: one atomic
instruction each when uncontended, no system call. A build without a C compiler
(TOLLWAY_PURE_PYTHON) runs the same operations in Python under the file's flock (two system calls).
Either way a lock whose holder dies, even by kill -9, is released (the kernel's robust futex list,
or flock's), so a killed worker never blocks the others. The file outlives the workers (and a
restart of the node): a window's count goes on.

A counter is a `Key`: a 128-bit digest of what it counts (`key_of(text)`, computed once per
identity by its user), and it counts within a window that ends at `window_end` (epoch seconds).
A slot holds (digest, window end, count) as four native 64-bit integers; a slot whose window has
ended is free again. A key lives within PROBES slots of its home slot: an insertion takes the first
free slot there, so a lookup that meets a never-used slot may stop.

`add(keys, limits, cost)` is the operation rate limits need: either every counter has room for
`cost` (count + cost <= limit) and each is increased by it, or none changes. Either way the counts
are returned, so a caller can say what remains.
"""

from __future__ import annotations

import fcntl
import hashlib
import mmap
import os
import struct
from pathlib import Path
from typing import Any, Final, NamedTuple

__all__ = ["FILE_NAME", "Key", "SharedCounters", "TableFull", "key_of"]

FILE_NAME: Final = "shared_counters"
MAGIC_MUTEX: Final = 0x544F4C4C43540002   # "TOLLCT", layout 2, locked by the header's mutex
MAGIC_FLOCK: Final = 0x544F4C4C43540003   # the same layout, locked by flock (a pure Python build)
HEADER: Final = 16                  # int64 words: magic, slot count, reserved; the mutex at byte 64
WORDS: Final = 4                    # per slot: digest high, digest low, window end, count
PROBES: Final = 32
HINTS: Final = 65_536               # keys whose last slot a process remembers

# Bound once: a module attribute read costs a compiled caller as much as the call (Performance
# notes: shared counters).
_flock: Final = fcntl.flock
_LOCK_EX: Final = fcntl.LOCK_EX
_LOCK_UN: Final = fcntl.LOCK_UN
_read_slot: Final = struct.Struct("4q").unpack_from  # a slot's four words in one call

try:
    from tollway import _counters  # the C operations (setup.py builds them)
except ImportError:  # built without a C compiler
    _counters = None  # type: ignore[assignment]

NATIVE: Final = _counters is not None


class Key(NamedTuple):
    """A counter's identity: the two halves of a 128-bit digest (never both 0)."""

    high: int
    low: int


def key_of(text: str) -> Key:
    """The key of a counter named by `text` (a plugin's id and what it counts)."""
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()
    high = int.from_bytes(digest[:8], "little", signed=True)
    low = int.from_bytes(digest[8:], "little", signed=True)
    return Key(high, low if high or low else 1)


class TableFull(Exception):
    """No free slot within PROBES of a key's home: the table needs more slots (shared_counters_slots)."""


class SharedCounters:
    """The node's shared counter table (see the module docstring).

    `native` says which lock and operations: the C ones (the default where they were built) or
    Python's under flock. The file's magic number says which it was made for, so the two never
    share a table: opened the other way, a table is made anew (create) or refused."""

    def __init__(self, path: Path | str, slots: int, create: bool = False, native: bool = NATIVE) -> None:
        if slots < PROBES:
            raise ValueError(f"a shared counter table needs at least {PROBES} slots")
        if native and _counters is None:
            raise ValueError("the shared counters' C operations were not built (TOLLWAY_PURE_PYTHON)")
        self.path = Path(path)
        self.slots = slots
        self.magic = MAGIC_MUTEX if native else MAGIC_FLOCK
        self.hints: dict[Key, int] = {}  # the word index where a key was last found (checked before use)
        size = (HEADER + slots * WORDS) * 8
        flags = os.O_RDWR | os.O_CLOEXEC | (os.O_CREAT if create else 0)
        self.fd = os.open(self.path, flags, 0o600)
        self.table: Any = None  # the C operations' mapping, when native
        try:
            if create:
                self._prepare(size)
            if not self._holds_table(size):
                raise ValueError(f"{self.path} is not a table of {slots} shared counters")
            if native:  # the C operations map the file themselves
                self.table = _counters.Table(self.fd, slots)
                if create:  # the node starts: no other process holds the table's mutex
                    self.table.reset_lock()
            else:
                self.map = mmap.mmap(self.fd, size)
                self.words = memoryview(self.map).cast("q")
        except BaseException:
            os.close(self.fd)
            raise

    def _holds_table(self, size: int) -> bool:
        """Whether the file is a table of this engine (its magic), slot count and size."""
        header = os.pread(self.fd, 16, 0)
        return header == self.magic.to_bytes(8, "little") + self.slots.to_bytes(8, "little") \
            and os.fstat(self.fd).st_size == size

    def _prepare(self, size: int) -> None:
        """A table of this size: kept when the file holds one (its counts go on), else made anew."""
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        try:
            if self._holds_table(size):
                return
            os.ftruncate(self.fd, 0)
            os.ftruncate(self.fd, size)  # a sparse file: pages are allocated as slots are used
            os.pwrite(self.fd, self.magic.to_bytes(8, "little") + self.slots.to_bytes(8, "little"), 0)
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self.table is not None:
            self.table.close()
        else:
            self.words.release()
            self.map.close()
        os.close(self.fd)

    def add(self, keys: list[Key], window_ends: list[int], limits: list[int], cost: int,
            now: int) -> tuple[bool, list[int]]:
        """Add `cost` to every counter when each has room for it; (added, the counts after)."""
        table = self.table
        if table is not None:
            done: tuple[bool, list[int]] | None = table.add(keys, window_ends, limits, cost, now)
            if done is None:
                raise TableFull(f"no free slot among {PROBES} for a counter; raise shared_counters_slots")
            return done
        fd = self.fd
        _flock(fd, _LOCK_EX)
        try:
            found: list[int] = []
            counts: list[int] = []
            admitted = True
            for i, key in enumerate(keys):
                slot, count = self._slot(key, window_ends[i], now)
                found.append(slot)
                counts.append(count)
                if count + cost > limits[i]:
                    admitted = False
            if not admitted:
                return False, counts
            words = self.words
            for i, slot in enumerate(found):
                count = counts[i] + cost
                counts[i] = count
                words[slot + 3] = count
            return True, counts
        finally:
            _flock(fd, _LOCK_UN)

    def get(self, key: Key, window_end: int, now: int) -> int:
        """A counter's count in the window ending at `window_end` (0 when it has none)."""
        if self.table is not None:
            return int(self.table.get(key, window_end))
        _flock(self.fd, _LOCK_EX)
        try:
            return self._slot(key, window_end, now)[1]
        finally:
            _flock(self.fd, _LOCK_UN)

    def _slot(self, key: Key, window_end: int, now: int) -> tuple[int, int]:
        """The word index of `key`'s slot for this window and its count, the slot taken (count 0)
        when it has none.

        The Python operations' (a build without the C ones), called with the flock held. A slot
        of the key's from an earlier window starts this one. A key is in one slot at most, so the
        slot it was last found in, still holding it, is its slot: read in one call, it spares the
        probing (Performance notes: shared counters).
        """
        slot = self.hints.get(key, -1)
        if slot >= 0:
            high, low, end, count = _read_slot(self.map, slot * 8)
            if high == key.high and low == key.low:
                if end >= window_end:  # this window, or a later one than the caller's: count in it
                    return slot, count
                words = self.words
                words[slot + 2] = window_end
                words[slot + 3] = 0
                return slot, 0
        slot = self._probe(key, window_end, now)
        hints = self.hints
        if len(hints) >= HINTS:
            hints.clear()
        hints[key] = slot
        return slot, int(self.words[slot + 3])

    def _probe(self, key: Key, window_end: int, now: int) -> int:
        """_slot() without a hint: the key's slot found among PROBES from its home, or taken."""
        words = self.words
        high, low = key
        home = (high ^ low) % self.slots
        free = -1
        for probe in range(PROBES):
            slot = HEADER + ((home + probe) % self.slots) * WORDS
            slot_high, slot_low = words[slot], words[slot + 1]
            if slot_high == high and slot_low == low:
                if words[slot + 2] != window_end:
                    if words[slot + 2] > window_end:
                        return slot  # a later window than the caller's: count in it
                    words[slot + 2] = window_end
                    words[slot + 3] = 0
                return slot
            if slot_high == 0 and slot_low == 0:
                if free < 0:
                    free = slot
                break  # never used: the key cannot be further on
            if free < 0 and words[slot + 2] <= now:
                free = slot
        if free < 0:
            raise TableFull(f"no free slot among {PROBES} for a counter; raise shared_counters_slots")
        words[free + 2] = window_end
        words[free + 3] = 0
        words[free + 1] = low
        words[free] = high
        return free
