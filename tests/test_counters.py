"""SharedCounters: exact across processes, windows that end, slots reused, and a holder killed with -9.

Each test runs on both engines: the C operations under the header's robust mutex (what a built
Tollway runs) and the Python ones under flock (a build without a C compiler)."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tollway.counters import NATIVE, PROBES, TableFull, key_of
from tollway.counters import SharedCounters as Table

SLOTS = 1024


@pytest.fixture(params=[pytest.param(True, id="c-mutex", marks=pytest.mark.skipif(not NATIVE, reason="not built")),
                        pytest.param(False, id="python-flock")])
def native(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


def SharedCounters(path: Path | str, slots: int, create: bool = False, *, native: bool) -> Table:  # noqa: N802
    return Table(path, slots, create=create, native=native)


def _hammer(path: str, native: bool, tries: int, limits: list[int], window_end: int,
            out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    table = SharedCounters(path, SLOTS, native=native)
    keys = [key_of("limit-me second"), key_of("limit-me hour")]
    admitted = sum(table.add(keys, [window_end, window_end], limits, 1, 0)[0] for _ in range(tries))
    out.put(admitted)


@pytest.mark.parametrize("limits", [[5000, 10**12], [10**12, 5000]], ids=["first-full", "second-full"])
def test_four_processes_admit_exactly_the_limit_when_more_arrive(tmp_path: Path, native: bool,
                                                                 limits: list[int]) -> None:
    path = str(tmp_path / "counters")
    SharedCounters(path, SLOTS, create=True, native=native).close()
    ctx = multiprocessing.get_context("spawn")
    out: multiprocessing.Queue = ctx.Queue()  # type: ignore[type-arg]
    workers = [ctx.Process(target=_hammer, args=(path, native, 3000, limits, 2_000_000_000, out)) for _ in range(4)]
    for worker in workers:
        worker.start()
    admitted = [out.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(10)
    assert sum(admitted) == 5000  # 12,000 tried, exactly the limit admitted
    table = SharedCounters(path, SLOTS, native=native)
    # neither counter took a refused call
    assert table.get(key_of("limit-me second"), 2_000_000_000, 0) == 5000
    assert table.get(key_of("limit-me hour"), 2_000_000_000, 0) == 5000


def test_all_counters_move_together_or_none_does(tmp_path: Path, native: bool) -> None:
    table = SharedCounters(tmp_path / "c", SLOTS, create=True, native=native)
    minute, hour = key_of("m"), key_of("h")
    assert table.add([minute, hour], [60, 3600], [2, 3], 1, 0) == (True, [1, 1])
    assert table.add([minute, hour], [60, 3600], [2, 3], 1, 0) == (True, [2, 2])
    # the minute is full: the hour is not charged for the refused call
    assert table.add([minute, hour], [60, 3600], [2, 3], 1, 0) == (False, [2, 2])
    assert table.get(hour, 3600, 0) == 2
    # a new minute window: the hour has one left
    assert table.add([minute, hour], [120, 3600], [2, 3], 1, 60) == (True, [1, 3])
    assert table.add([minute, hour], [120, 3600], [2, 3], 1, 60) == (False, [1, 3])


def test_a_cost_larger_than_what_remains_is_refused_whole(tmp_path: Path, native: bool) -> None:
    table = SharedCounters(tmp_path / "c", SLOTS, create=True, native=native)
    key = key_of("bytes")
    assert table.add([key], [60], [100], 70, 0) == (True, [70])
    assert table.add([key], [60], [100], 31, 0) == (False, [70])
    assert table.add([key], [60], [100], 30, 0) == (True, [100])


def test_ended_windows_free_their_slots_and_a_full_neighbourhood_says_so(tmp_path: Path, native: bool) -> None:
    table = SharedCounters(tmp_path / "c", PROBES, create=True, native=native)  # every key shares one neighbourhood
    keys = [key_of(f"k{i}") for i in range(PROBES)]
    for key in keys:
        assert table.add([key], [100], [10], 1, 0)[0]
    with pytest.raises(TableFull):
        table.add([key_of("one more")], [100], [10], 1, 0)
    # once their window ended, the slots are taken again, counting from zero
    assert table.add([key_of("one more")], [200], [10], 1, 100) == (True, [1])
    assert table.get(keys[0], 200, 100) in (0, 1)


def test_the_table_outlives_its_users_and_a_new_size_starts_it_anew(tmp_path: Path, native: bool) -> None:
    path = tmp_path / "c"
    table = SharedCounters(path, SLOTS, create=True, native=native)
    table.add([key_of("k")], [60], [10], 3, 0)
    table.close()
    again = SharedCounters(path, SLOTS, create=True, native=native)
    assert again.get(key_of("k"), 60, 0) == 3
    again.close()
    resized = SharedCounters(path, SLOTS * 2, create=True, native=native)
    assert resized.get(key_of("k"), 60, 0) == 0
    with pytest.raises(ValueError, match="not a table of 1024 shared counters"):
        SharedCounters(path, SLOTS, native=native)


HOLD_LOCK = """
import fcntl, sys, time
from tollway.counters import SharedCounters
table = SharedCounters(sys.argv[1], int(sys.argv[2]), native=sys.argv[3] == "1")
if table.table is not None:
    table.table.lock()
else:
    fcntl.flock(table.fd, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(60)
"""


def test_a_worker_killed_while_it_holds_the_lock_does_not_block_the_others(tmp_path: Path, native: bool) -> None:
    path = tmp_path / "c"
    table = SharedCounters(path, SLOTS, create=True, native=native)
    for round in (1, 2):  # twice: the lock a dead holder left is usable again, and again
        holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(path), str(SLOTS), "1" if native else "0"],
                                  stdout=subprocess.PIPE, text=True)
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(10)
        started = time.monotonic()
        assert table.add([key_of("k")], [60], [10], 1, 0) == (True, [round])
        assert time.monotonic() - started < 1.0


def test_a_table_made_for_one_engine_is_not_used_by_the_other(tmp_path: Path, native: bool) -> None:
    if not NATIVE:
        pytest.skip("one engine only in this build")
    path = tmp_path / "c"
    table = SharedCounters(path, SLOTS, create=True, native=native)
    table.add([key_of("k")], [60], [10], 1, 0)
    with pytest.raises(ValueError, match="not a table of 1024 shared counters"):
        SharedCounters(path, SLOTS, native=not native)
    assert table.get(key_of("k"), 60, 0) == 1


def test_a_slot_remembered_by_a_process_and_taken_by_another_key_is_not_counted_in(tmp_path: Path,
                                                                                   native: bool) -> None:
    path = tmp_path / "c"
    first = SharedCounters(path, PROBES, create=True, native=native)  # every key shares one neighbourhood
    second = SharedCounters(path, PROBES, native=native)               # another worker's mapping, with hints of its own
    keys = [key_of(f"k{i}") for i in range(PROBES)]
    for key in keys:
        assert second.add([key], [100], [10], 1, 0) == (True, [1])
    assert first.add([keys[0]], [100], [10], 1, 0) == (True, [2])
    # the windows ended: a new key takes a slot that both remember for one of the old keys
    newcomer = key_of("newcomer")
    assert first.add([newcomer], [200], [10], 5, 100) == (True, [5])
    if native:  # no hints: the old key whose slot was taken is gone
        old = next(key for key in keys if second.get(key, 100, 100) == 0)
    else:
        taken = first.hints[newcomer]
        old = next(key for key in keys if second.hints[key] == taken)
    assert second.add([old], [200], [10], 1, 100) == (True, [1])  # a slot of its own, from 0
    if not native:
        assert second.hints[old] != taken
    assert first.get(newcomer, 200, 100) == 5 and second.get(newcomer, 200, 100) == 5
    assert first.get(old, 200, 100) == 1


def test_a_remembered_slot_starts_a_new_window_at_zero(tmp_path: Path, native: bool) -> None:
    table = SharedCounters(tmp_path / "c", SLOTS, create=True, native=native)
    key = key_of("k")
    assert table.add([key], [60], [3], 3, 0) == (True, [3])
    assert table.add([key], [60], [3], 1, 0) == (False, [3])
    assert native or key in table.hints
    assert table.add([key], [120], [3], 1, 60) == (True, [1])
    assert table.add([key], [60], [3], 1, 59) == (True, [2])  # a caller behind counts in the later window


@pytest.mark.skipif(not NATIVE, reason="not built")
def test_the_c_operations_read_the_layout_counters_py_writes() -> None:
    from tollway import _counters
    from tollway.counters import HEADER

    assert (_counters.HEADER_WORDS, _counters.PROBES) == (HEADER, PROBES)
