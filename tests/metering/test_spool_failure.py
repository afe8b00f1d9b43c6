"""A spool that cannot be written: calls are served with an alarm, or refused with 503, and
recording resumes once the disk has room. Every failure here is a real one from the kernel."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.metering.conftest import finished_call
from tests.proxy.conftest import plugin, request, route, service, snapshot
from tollway.metering.aggregate import UsageBatch
from tollway.metering.spool import SpoolReader, SpoolWriter
from tollway.plugins.billable.handler import REFUSED_MESSAGE


def spool_batch(spool_dir: Path) -> UsageBatch:
    reader = SpoolReader(spool_dir)
    batch = UsageBatch()
    for file in reader.files():
        for chunk in reader.read(file, 0):
            batch.add_lines(chunk.lines, file.name)
    return batch


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_vanished_spool_directory_drops_calls_with_one_loud_alarm_then_records_again(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    spool_dir = tmp_path / "spool"
    writer = SpoolWriter(spool_dir, "w1", file_bytes=1, clock=clock)  # a file per call
    writer.append(finished_call(started_at=1.0))
    spool_dir.rename(tmp_path / "elsewhere")  # the next file cannot be created: ENOENT
    with caplog.at_level(logging.ERROR, "tollway.metering.spool"):
        for i in range(50):
            writer.append(finished_call(started_at=2.0 + i))
    assert writer.failing and writer.dropped == 50
    assert writer.last_error is not None and writer.last_error.startswith("ENOENT")
    alarms = [r for r in caplog.records if "CANNOT BE WRITTEN" in r.getMessage()]
    assert len(alarms) == 1  # rate-limited, not one per call
    (tmp_path / "elsewhere").rename(spool_dir)
    assert not writer.recover()  # no probe before PROBE_EVERY has passed
    clock.now += 1.0
    writer.append(finished_call(started_at=100.0))  # probes: a new file, then records
    writer.close()
    assert not writer.failing and writer.dropped == 50
    batch = spool_batch(spool_dir)
    assert (batch.records, batch.bad_lines) == (2, 0)


def test_efbig_drops_calls_and_a_probe_per_second_leaves_no_file_behind(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "tests.metering.spool_child", "writer", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    failed = seen["failed"]
    assert failed["failing"] and failed["dropped"] == 2 and failed["error"].startswith("EFBIG")
    assert not failed["tried"]
    full = seen["full"]
    assert full["failing"] and full["dropped"] == 5 and not full["recover"] and not full["new_files"]
    assert full["error"].startswith("EFBIG")
    assert not seen["before_probe"] and seen["after_probe"]
    assert seen["final"] == {"failing": False, "dropped": 5}
    batch = spool_batch(tmp_path)
    assert (batch.records, batch.bad_lines) == (2, 0)  # calls 1 and 8


def test_a_writer_that_cannot_allocate_its_first_file_starts_failing_and_recovers(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "tests.metering.spool_child", "starved", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["failing"] and seen["error"].startswith("EFBIG")
    assert seen["final"] == {"failing": False, "dropped": 1}
    batch = spool_batch(tmp_path)
    assert (batch.records, batch.bad_lines) == (1, 0)


@pytest.fixture
def billable_proxy(tmp_path: Path, echo_upstream: int, request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    svc = service(echo_upstream, name="echo")
    rte = route(svc, ["/mock"], name="mock")
    snap = tmp_path / "snapshot.json"
    snap.write_text(json.dumps(snapshot([svc], [rte], plugins=[plugin("billable")])))
    prefix = tmp_path / "prefix"
    proc = subprocess.Popen([sys.executable, "-m", "tests.metering.spool_child", "proxy", str(prefix), str(snap),
                             request.param], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        yield proc, port, prefix / "spool"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def _finish(proc: subprocess.Popen[str]) -> dict[str, int]:
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=15)
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _signal(proc: subprocess.Popen[str], sig: int) -> None:
    proc.send_signal(sig)
    time.sleep(0.2)


@pytest.mark.parametrize("billable_proxy", ["serve"], indirect=True)
def test_serve_policy_serves_through_a_failing_spool_and_counts_the_unmetered_calls(billable_proxy) -> None:  # type: ignore[no-untyped-def]
    proc, port, spool_dir = billable_proxy
    assert request(port, "GET", "/mock").status == 200
    _signal(proc, signal.SIGUSR1)  # no file can be written any more
    assert [request(port, "GET", "/mock").status for _ in range(5)] == [200] * 5
    _signal(proc, signal.SIGUSR2)  # room again
    time.sleep(1.0)
    assert [request(port, "GET", "/mock").status for _ in range(3)] == [200] * 3
    assert _finish(proc) == {"dropped": 5, "refused": 0, "failing": False}
    batch = spool_batch(spool_dir)
    assert (batch.records, batch.bad_lines) == (4, 0)


@pytest.mark.parametrize("billable_proxy", ["refuse"], indirect=True)
def test_refuse_policy_never_serves_a_call_it_cannot_record_and_serves_again_once_it_can(billable_proxy) -> None:  # type: ignore[no-untyped-def]
    proc, port, spool_dir = billable_proxy
    assert request(port, "GET", "/mock").status == 200
    _signal(proc, signal.SIGUSR1)
    # The next call would need a new file (a file per call): none can be made, so it is refused
    # before it is served, not served and then lost.
    refused = [request(port, "GET", "/mock") for _ in range(6)]
    assert [r.status for r in refused] == [503] * 6
    assert refused[0].json() == {"message": REFUSED_MESSAGE}
    time.sleep(1.0)
    assert request(port, "GET", "/mock").status == 503  # the probe fails: still no room
    _signal(proc, signal.SIGUSR2)
    time.sleep(1.0)
    assert [request(port, "GET", "/mock").status for _ in range(3)] == [200] * 3
    assert _finish(proc) == {"dropped": 0, "refused": 7, "failing": False}
    batch = spool_batch(spool_dir)
    assert (batch.records, batch.bad_lines) == (4, 0)
    assert {key[4] for key in batch.minutes} == {200}  # refusals are not billed
