"""The harness's pure parts, without nginx or wrk: parsing, statistics, configs, the Markdown table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.harness.ledger_hook import parse_output, run_ledger_report
from bench.harness.nginx import render_config
from bench.harness.openloop import OpenLoopPlan, percentiles
from bench.harness.report import paired_table, rate_limiting_table, render_markdown
from bench.harness.runner import Bench, BenchOptions, fixed_rate_levels
from bench.harness.tollway_node import PROFILES, _admin_steps
from bench.harness.wrk import DONE_SCRIPT, MARKER, WrkError, parse_wrk_output
from tests.bench.reports import config, sample_report, wrk_run

WRK_STDOUT = """Running 1s test @ http://127.0.0.1:8080/
  1 threads and 4 connections
Requests/sec:  30000.00
WRK_JSON {"requests":30000,"duration_us":1000000,"bytes":4000000,"p50_us":120,"p90_us":200,"p99_us":900,\
"p999_us":2100,"mean_us":140.5,"max_us":4000,"errors":{"connect":0,"read":0,"write":0,"status":3,"timeout":1}}
"""


def test_wrk_result_line_gives_rps_percentiles_and_errors() -> None:
    result = parse_wrk_output(WRK_STDOUT)
    assert result.rps == 30000
    assert (result.p50_us, result.p99_us, result.p999_us) == (120, 900, 2100)
    assert result.error_count == 4


def test_wrk_output_without_the_result_line_is_an_error_that_shows_the_output() -> None:
    with pytest.raises(WrkError, match="(?s)no result line.*Requests/sec"):
        parse_wrk_output("Running 1s test\nRequests/sec: 1.0\n")


def test_done_script_prints_the_marker_wrk_output_is_parsed_by() -> None:
    assert MARKER in DONE_SCRIPT and "latency:percentile(99.9)" in DONE_SCRIPT


def test_percentiles_use_the_nearest_rank() -> None:
    values = percentiles([float(v) for v in range(1, 1001)])
    assert values == {"p50": 500.0, "p90": 900.0, "p99": 990.0, "p999": 999.0, "max": 1000.0}
    assert percentiles([])["p99"] == 0.0


def test_open_loop_plan_reports_every_bad_value_at_once() -> None:
    with pytest.raises(ValueError, match="rate must be positive.*duration.*connections"):
        OpenLoopPlan(port=1, rate=0, duration=0, connections=0)


def test_open_loop_request_carries_host_and_headers() -> None:
    request = OpenLoopPlan(port=8000, rate=1, duration=1, path="/bench", headers={"apikey": "k"}).request()
    assert request == b"GET /bench HTTP/1.1\r\nHost: 127.0.0.1:8000\r\napikey: k\r\n\r\n"


def test_nginx_proxy_config_keeps_upstream_connections_alive(tmp_path: Path) -> None:
    conf = render_config(tmp_path, 8081, upstream_port=8080)
    assert "keepalive 64;" in conf and "proxy_http_version 1.1;" in conf and 'Connection ""' in conf
    assert "worker_processes 1;" in conf and "access_log off;" in conf
    assert 'return 200' in render_config(tmp_path, 8080)
    assert "X-Request-Id $request_id" in render_config(tmp_path, 8080, vary_heads=True)
    assert "X-Request-Id" not in render_config(tmp_path, 8080)


def test_tollway_profiles_enable_and_configure_their_plugins() -> None:
    assert [profile.plugins for profile in PROFILES] == ["off", "key-auth", "key-auth,billable",
                                                        "key-auth,billable,rate-limiting",
                                                        "key-auth,billable,rate-limiting",
                                                        "key-auth,billable,rate-limiting"]
    steps = [(method, path) for method, path, _ in _admin_steps(PROFILES[2], "http://127.0.0.1:1/")]
    assert steps == [("PUT", "/services/bench"), ("POST", "/services/bench/routes"),
                     ("POST", "/routes/bench/plugins"), ("PUT", "/consumers/bench"),
                     ("POST", "/consumers/bench/key-auth"), ("POST", "/plugins")]
    assert len(_admin_steps(PROFILES[0], "http://127.0.0.1:1/")) == 2
    for profile in PROFILES[3:]:  # rate-limiting on the route, with a limit no bench reaches
        method, path, form = _admin_steps(profile, "http://127.0.0.1:1/")[-1]
        assert (method, path, form["name"], form["config.policy"]) == \
            ("POST", "/routes/bench/plugins", "rate-limiting", profile.rate_limiting)
        assert ("config.redis.host" in form) == (profile.rate_limiting == "redis")


def test_rate_limiting_cost_is_compared_within_rounds_against_its_target() -> None:
    def runs(key: str, rps: list[int]) -> dict[str, Any]:
        return {"key": key, "kind": "tollway", "workers": 1,
                "runs": [{"round": n, "rps": value} for n, value in enumerate(rps, 1)]}

    lines = rate_limiting_table([runs("tollway-keyauth-billable-w1", [1000, 1000]),
                                 runs("tollway-keyauth-billable-ratelimit-local-w1", [950, 900]),
                                 runs("tollway-keyauth-billable-ratelimit-redis-w1", [600, 700]),
                                 runs("tollway-keyauth-billable-ratelimit-cluster-w1", [500, 800])])
    assert lines[2] == "| 1 | local | 5.0% / 10.0% | 7.5% | 10% | yes |"
    assert lines[3] == "| 1 | redis | 40.0% / 30.0% | 35.0% | 35% | yes |"
    assert lines[4] == "| 1 | cluster | 50.0% / 20.0% | 35.0% | – | – |"  # no target: measured, not judged


def test_markdown_shows_medians_ratios_rss_added_latency_and_what_was_not_measured() -> None:
    table = render_markdown(sample_report())
    assert "- Machine: Test CPU, 2 cores" in table
    assert ("| nginx proxy_pass (keepalive) | 1 | 30,000 | 30,000 / 29,000 / 31,000 | 0.50 | 3.00 | 1.00× "
            "| master 50.0, worker 1 25.0 | 0 |") in table
    assert "| Tollway key-auth + billable | 1 | 7,000 | 7,000 / 6,800 / 7,100 |" in table
    assert "| 0.23× |" in table
    assert "| 15,000 | Tollway key-auth + billable | 1 | 4,999 | 4.00 | 29.00 | 33.00 | +3.00 | +25.00 | +24.00 " \
           "| 12 unanswered |" in table
    assert "- Tollway no plugins (2 workers): dropped after: setup failed: boom" in table


def test_the_targets_are_compared_within_each_round() -> None:
    def runs(*pairs: tuple[float, int]) -> list[dict]:
        return [{**wrk_run(rps, p99=p99), "round": number} for number, (rps, p99) in enumerate(pairs, 1)]
    configs = [
        config("nginx-proxy", "nginx proxy_pass (keepalive)", "nginx", 1,
               runs((80000, 1600), (60000, 2000), (70000, 1500))),
        # a round lost (the configuration failed in it): only the rounds both have are compared
        config("tollway-keyauth-w1", "Tollway key-auth", "tollway", 1,
               [run for run in runs((60000, 2000), (40000, 2600), (50000, 2000)) if run["round"] != 2]),
        config("tollway-keyauth-billable-w1", "Tollway key-auth + billable", "tollway", 1,
               runs((57000, 2500), (30000, 3600), (46000, 2600))),
        config("tollway-plain-w2", "Tollway no plugins", "tollway", 2, runs((50000, 3000))),
    ]
    assert paired_table(configs)[2:] == ["| 1 | -5.0% / -8.0% | -6.5% | +0.90 / +1.60 / +1.10 | +1.10 | 1 of 3 |"]
    assert paired_table(configs[:2]) == []


def test_ledger_hook_reads_json_or_keeps_the_text() -> None:
    assert parse_output('{"a": 1}\n') == {"a": 1}
    assert parse_output('loading\n{"rows": 5}\n') == {"rows": 5}
    assert parse_output("sqlite: 0.3 s\n") == {"lines": ["sqlite: 0.3 s"]}


def test_ledger_hook_skips_a_missing_script(tmp_path: Path) -> None:
    result = run_ledger_report(script=Path(__file__).resolve().parents[2] / "bench" / "no_such_report.py")
    assert result["status"] == "absent"


def test_a_failed_measurement_is_retried_and_remembered(tmp_path: Path) -> None:
    bench = Bench(BenchOptions(attempts=2), tmp_path, say=lambda message: None)
    failures = [RuntimeError("proxy not ready\nlog tail")]

    def measure() -> dict:
        if failures:
            raise failures.pop()
        return {"rps": 1.0}

    record: dict = {"failures": [], "error": None}
    assert bench._attempt(measure, record, "[round 1/3] t") == {"rps": 1.0}
    assert record == {"failures": ["[round 1/3] t, attempt 1: proxy not ready\nlog tail"], "error": None}


def test_a_configuration_that_keeps_failing_is_dropped_with_the_last_reason(tmp_path: Path) -> None:
    bench = Bench(BenchOptions(attempts=2), tmp_path, say=lambda message: None)

    def measure() -> dict:
        raise RuntimeError("down")

    record: dict = {"failures": [], "error": None}
    assert bench._attempt(measure, record, "t") is None
    assert len(record["failures"]) == 2 and record["error"] == "t, attempt 2: down"


def test_fixed_rates_add_half_of_tollways_maximum_when_it_is_well_below_nginx() -> None:
    assert fixed_rate_levels(78_834, 44_614) == [("half of nginx proxy_pass's maximum", 39_417),
                                                 ("half of Tollway key-auth + billable's maximum", 22_307)]
    assert fixed_rate_levels(60_000, 58_000) == [("half of nginx proxy_pass's maximum", 30_000)]
    assert fixed_rate_levels(60_000, None) == [("half of nginx proxy_pass's maximum", 30_000)]
