"""A small disk under the prefix: spool files are sized to the room there is, and the flusher says so.

A real filesystem of 20 MiB (tmpfs, mounted by the test; skipped where mounting is not allowed).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.metering.conftest import finished_call
from tollway.metering.spool import DISK_ALARM_BYTES, FILE_BYTES, MIN_FILE_BYTES, SpoolReader, SpoolWriter, disk_free


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small filesystem here (needs root with CAP_SYS_ADMIN)")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_two_writers_keep_metering_on_a_disk_smaller_than_two_default_files(small_disk: Path) -> None:
    spool = small_disk / "spool"
    writers = [SpoolWriter(spool, f"w{i}") for i in range(2)]  # the default FILE_BYTES: 16 MiB each
    assert not any(w.failing for w in writers)
    for i in range(20_000):
        writers[i % 2].append(finished_call(started_at=1_800_000_000 + i))
    assert [w.dropped for w in writers] == [0, 0]
    sizes = [f.size for f in SpoolReader(spool).files()]
    assert all(MIN_FILE_BYTES <= size < FILE_BYTES for size in sizes), sizes
    lines = sum(len(chunk.lines) for file in SpoolReader(spool).files() for chunk in SpoolReader(spool).read(file, 0))
    assert lines == 20_000
    for writer in writers:
        writer.close()


def test_a_full_disk_fails_loudly_and_the_free_space_is_known(small_disk: Path) -> None:
    (small_disk / "ballast").write_bytes(b"x" * (20 * 1024 * 1024 - 32 * 1024))  # leaves less than a file
    writer = SpoolWriter(small_disk / "spool", "w1")
    free = disk_free(small_disk)
    assert free is not None and free < DISK_ALARM_BYTES
    assert writer.failing
    writer.append(finished_call(started_at=1_800_000_000))
    assert writer.dropped == 1
    writer.close()
