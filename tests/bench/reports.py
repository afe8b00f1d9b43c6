"""A small, made-up results report for the table and chart writers (shaped as the runner writes it)."""

from __future__ import annotations

from typing import Any

from bench.harness.summary import add_ratios, added_latency, summarize_open_loop, summarize_runs

MACHINE = {"cpu_model": "Test CPU", "cores": 2, "physical_cores": 1, "memory_gib": 4.0,
           "kernel": "Linux 6.1", "python": "CPython 3.11.7", "nginx": "nginx/1.22.1",
           "wrk": "wrk debian/4.1.0", "tollway_commit": "abc1234"}


def wrk_run(rps: float, p50: int = 500, p99: int = 3000, rss: int = 50 << 20, workers: int = 1) -> dict[str, Any]:
    roles = {"master": rss, **{f"worker {n}": rss // 2 for n in range(1, workers + 1)}}
    return {"round": 1, "requests": int(rps * 10), "duration_s": 10.0, "rps": rps, "p50_us": p50,
            "p90_us": p50 * 2, "p99_us": p99, "p999_us": p99 * 2, "mean_us": p50 * 1.1, "max_us": p99 * 3,
            "errors": {"connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0},
            "rss_peak_bytes": roles, "loadavg_1m_before": 0.5}


def open_loop_run(p50: float, p99: float, p999: float, unanswered: int = 0) -> dict[str, Any]:
    pcts = {"p50": p50, "p90": p50 * 2, "p99": p99, "p999": p999, "max": p999 * 2}
    return {"rate": 5000.0, "duration_s": 10.0, "connections": 50, "measured": 50000, "achieved_rps": 4999.0,
            "errors": {"unanswered": unanswered} if unanswered else {}, "latency_us": pcts,
            "service_us": pcts, "send_lag_us": {name: 500.0 for name in pcts}}


def config(key: str, label: str, kind: str, workers: int, runs: list[dict[str, Any]],
           error: str | None = None) -> dict[str, Any]:
    return {"key": key, "label": label, "kind": kind, "workers": workers, "runs": runs, "error": error,
            "summary": summarize_runs(runs) if runs else None}


def sample_report(direct_run: dict[str, Any] | None = None) -> dict[str, Any]:
    configs = [
        config("direct", "direct to upstream (nginx return 200)", "direct", 1,
               [direct_run or wrk_run(60000, 400, 3000)]),
        config("nginx-proxy", "nginx proxy_pass (keepalive)", "nginx", 1,
               [wrk_run(30000, 1200, 8000), wrk_run(29000), wrk_run(31000)]),
        config("tollway-keyauth-billable-w1", "Tollway key-auth + billable", "tollway", 1,
               [wrk_run(7000, 6000, 17000), wrk_run(6800), wrk_run(7100)]),
        config("tollway-keyauth-billable-w2", "Tollway key-auth + billable", "tollway", 2,
               [wrk_run(9000, workers=2)]),
        config("tollway-plain-w2", "Tollway no plugins", "tollway", 2, [], error="setup failed: boom\ndetails"),
    ]
    add_ratios(configs)
    nginx = summarize_open_loop([open_loop_run(1000, 4000, 9000)])
    tollway = summarize_open_loop([open_loop_run(4000, 29000, 33000, unanswered=12)])
    level = {"basis": "half of nginx proxy_pass's maximum", "rate": 15000, "results": [
        {"key": "nginx-proxy", "label": "nginx proxy_pass (keepalive)", "workers": 1, "runs": [],
         "summary": nginx, "error": None},
        {"key": "tollway-keyauth-billable-w1", "label": "Tollway key-auth + billable", "workers": 1, "runs": [],
         "summary": tollway, "error": None, "added_us": added_latency(tollway, nginx)},
    ]}
    return {"version": 1, "started_at": "2026-01-02T03:04:05Z", "finished_at": "2026-01-02T03:14:05Z",
            "command": "./scripts/bench.sh", "machine": MACHINE,
            "options": {"duration": 10.0, "warmup": 2.0, "rounds": 3, "connections": 50, "threads": 1,
                        "rate_duration": 10.0, "rate_rounds": 3, "rate_connections": 50},
            "upstream": "nginx return 200, worker_processes 1, access_log off",
            "configs": configs, "fixed_rate": [level]}
