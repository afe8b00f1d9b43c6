"""SharedCounters: exact across processes, windows that end, slots reused, and a holder killed with -9."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tollway.counters import PROBES, SharedCounters, TableFull, key_of

SLOTS = 1024


def _hammer(path: str, tries: int, limit: int, window_end: int, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    table = SharedCounters(path, SLOTS)
    key = key_of("limit-me")
    admitted = sum(table.add([key], [window_end], [limit], 1, 0)[0] for _ in range(tries))
    out.put(admitted)


def test_four_processes_admit_exactly_the_limit_when_more_arrive(tmp_path: Path) -> None:
    path = str(tmp_path / "counters")
    SharedCounters(path, SLOTS, create=True).close()
    ctx = multiprocessing.get_context("spawn")
    out: multiprocessing.Queue = ctx.Queue()  # type: ignore[type-arg]
    workers = [ctx.Process(target=_hammer, args=(path, 3000, 5000, 2_000_000_000, out)) for _ in range(4)]
    for worker in workers:
        worker.start()
    admitted = [out.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(10)
    assert sum(admitted) == 5000  # 12,000 tried, exactly the limit admitted


def test_all_counters_move_together_or_none_does(tmp_path: Path) -> None:
    table = SharedCounters(tmp_path / "c", SLOTS, create=True)
    minute, hour = key_of("m"), key_of("h")
    assert table.add([minute, hour], [60, 3600], [2, 3], 1, 0) == (True, [1, 1])
    assert table.add([minute, hour], [60, 3600], [2, 3], 1, 0) == (True, [2, 2])
    # the minute is full: the hour is not charged for the refused call
    assert table.add([minute, hour], [60, 3600], [2, 3], 1, 0) == (False, [2, 2])
    assert table.get(hour, 3600, 0) == 2
    # a new minute window: the hour has one left
    assert table.add([minute, hour], [120, 3600], [2, 3], 1, 60) == (True, [1, 3])
    assert table.add([minute, hour], [120, 3600], [2, 3], 1, 60) == (False, [1, 3])


def test_a_cost_larger_than_what_remains_is_refused_whole(tmp_path: Path) -> None:
    table = SharedCounters(tmp_path / "c", SLOTS, create=True)
    key = key_of("bytes")
    assert table.add([key], [60], [100], 70, 0) == (True, [70])
    assert table.add([key], [60], [100], 31, 0) == (False, [70])
    assert table.add([key], [60], [100], 30, 0) == (True, [100])


def test_ended_windows_free_their_slots_and_a_full_neighbourhood_says_so(tmp_path: Path) -> None:
    table = SharedCounters(tmp_path / "c", PROBES, create=True)  # every key shares one neighbourhood
    keys = [key_of(f"k{i}") for i in range(PROBES)]
    for key in keys:
        assert table.add([key], [100], [10], 1, 0)[0]
    with pytest.raises(TableFull):
        table.add([key_of("one more")], [100], [10], 1, 0)
    # once their window ended, the slots are taken again, counting from zero
    assert table.add([key_of("one more")], [200], [10], 1, 100) == (True, [1])
    assert table.get(keys[0], 200, 100) in (0, 1)


def test_the_table_outlives_its_users_and_a_new_size_starts_it_anew(tmp_path: Path) -> None:
    path = tmp_path / "c"
    table = SharedCounters(path, SLOTS, create=True)
    table.add([key_of("k")], [60], [10], 3, 0)
    table.close()
    again = SharedCounters(path, SLOTS, create=True)
    assert again.get(key_of("k"), 60, 0) == 3
    again.close()
    resized = SharedCounters(path, SLOTS * 2, create=True)
    assert resized.get(key_of("k"), 60, 0) == 0
    with pytest.raises(ValueError, match="not a table of 1024 shared counters"):
        SharedCounters(path, SLOTS)


HOLD_LOCK = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(60)
"""


def test_a_worker_killed_while_it_holds_the_lock_does_not_block_the_others(tmp_path: Path) -> None:
    path = tmp_path / "c"
    table = SharedCounters(path, SLOTS, create=True)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(path)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(10)
    started = time.monotonic()
    assert table.add([key_of("k")], [60], [10], 1, 0) == (True, [1])
    assert time.monotonic() - started < 1.0


def test_a_slot_remembered_by_a_process_and_taken_by_another_key_is_not_counted_in(tmp_path: Path) -> None:
    path = tmp_path / "c"
    first = SharedCounters(path, PROBES, create=True)  # every key shares one neighbourhood
    second = SharedCounters(path, PROBES)               # another worker's mapping, with hints of its own
    keys = [key_of(f"k{i}") for i in range(PROBES)]
    for key in keys:
        assert second.add([key], [100], [10], 1, 0) == (True, [1])
    assert first.add([keys[0]], [100], [10], 1, 0) == (True, [2])
    # the windows ended: a new key takes a slot that both remember for one of the old keys
    newcomer = key_of("newcomer")
    assert first.add([newcomer], [200], [10], 5, 100) == (True, [5])
    taken = first.hints[newcomer]
    old = next(key for key in keys if second.hints[key] == taken)
    assert second.add([old], [200], [10], 1, 100) == (True, [1])  # a slot of its own, from 0
    assert second.hints[old] != taken
    assert first.get(newcomer, 200, 100) == 5 and second.get(newcomer, 200, 100) == 5
    assert first.get(old, 200, 100) == 1


def test_a_remembered_slot_starts_a_new_window_at_zero(tmp_path: Path) -> None:
    table = SharedCounters(tmp_path / "c", SLOTS, create=True)
    key = key_of("k")
    assert table.add([key], [60], [3], 3, 0) == (True, [3])
    assert table.add([key], [60], [3], 1, 0) == (False, [3])
    assert key in table.hints
    assert table.add([key], [120], [3], 1, 60) == (True, [1])
    assert table.add([key], [60], [3], 1, 59) == (True, [2])  # a caller behind counts in the later window
