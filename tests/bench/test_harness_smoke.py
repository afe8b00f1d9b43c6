"""Smoke test of the bench harness with real tools: the nginx upstream, a 1 s wrk run, an open-loop
run at a low rate, RSS sampling, and the table and chart writers. A few seconds in all; skipped
when nginx or wrk is not installed (`apt-get install -y nginx wrk`)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.harness.cli import write_outputs
from bench.harness.nginx import NginxServer
from bench.harness.openloop import OpenLoopPlan, run_open_loop
from bench.harness.rss import RssSampler
from bench.harness.tools import missing_tools
from bench.harness.wrk import run_wrk, write_done_script
from tests.bench.reports import sample_report

MISSING = missing_tools("nginx", "wrk")
pytestmark = pytest.mark.skipif(
    bool(MISSING), reason=f"bench smoke test needs {' and '.join(MISSING)} (apt-get install -y nginx wrk)")


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NginxServer]:
    with NginxServer.upstream(tmp_path_factory.mktemp("upstream")) as server:
        yield server


@pytest.fixture(scope="module")
def wrk_run(upstream: NginxServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """One second of wrk against the upstream while its RSS is sampled, as the runner records it."""
    script = write_done_script(tmp_path_factory.mktemp("wrk"))
    with RssSampler(upstream.processes, interval=0.1) as sampler:
        result = run_wrk(upstream.url + "/bench", connections=4, threads=1, duration=1, script=script,
                         headers={"apikey": "bench-key"})
    return {"round": 1, **result.to_dict(), "rss_peak_bytes": sampler.peaks, "loadavg_1m_before": 0.0}


def test_wrk_against_the_nginx_upstream_yields_rps_and_ordered_percentiles(wrk_run: dict) -> None:
    assert wrk_run["requests"] > 100
    assert wrk_run["rps"] > 100
    assert 0 < wrk_run["p50_us"] <= wrk_run["p99_us"] <= wrk_run["p999_us"] <= wrk_run["max_us"]
    assert sum(wrk_run["errors"].values()) == 0


def test_rss_is_sampled_for_the_nginx_master_and_its_worker(wrk_run: dict) -> None:
    peaks = wrk_run["rss_peak_bytes"]
    assert set(peaks) == {"master", "worker 1"}
    assert all(rss > 0 for rss in peaks.values())


def test_nginx_proxy_pass_reaches_the_upstream(upstream: NginxServer, tmp_path: Path) -> None:
    with NginxServer.proxy(upstream.port, tmp_path) as proxy:
        result = run_wrk(proxy.url + "/bench", connections=2, threads=1, duration=1,
                         script=write_done_script(tmp_path))
    assert result.requests > 100 and result.error_count == 0


def test_open_loop_generator_holds_a_low_constant_rate(upstream: NginxServer) -> None:
    result = run_open_loop(OpenLoopPlan(port=upstream.port, rate=200, duration=1, warmup=0.2, connections=4,
                                        path="/bench", headers={"apikey": "bench-key"}))
    assert result.errors == {}
    assert 190 <= result.measured <= 210
    assert result.achieved_rps == pytest.approx(200, rel=0.1)
    assert 0 < result.latency_us["p50"] <= result.latency_us["p999"]


def test_table_and_chart_writers_produce_files(wrk_run: dict, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="the chart needs matplotlib (pip install matplotlib)")
    written = write_outputs(sample_report(direct_run=wrk_run), tmp_path)
    names = sorted(path.name for path in written)
    assert names == ["20260102T030405Z.json", "latest.md", "latest.png"]
    table = (tmp_path / "latest.md").read_text()
    assert "| direct to upstream (nginx return 200) | 1 |" in table
    assert (tmp_path / "latest.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="needs valgrind")
def test_instruction_counts_grow_with_the_work_counted(tmp_path: Path) -> None:
    from bench.instructions import total

    counts = []
    for loops in (1_000, 21_000):
        out = tmp_path / f"count.{loops}"
        subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "sh", "-c",
                        f"i=0; while [ $i -lt {loops} ]; do i=$((i+1)); done"], capture_output=True, check=True)
        counts.append(total(out))
    assert 0 < counts[0] < counts[1]
    assert counts[1] - counts[0] > 20_000 * 100  # a shell loop iteration is hundreds of instructions
