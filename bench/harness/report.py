"""latest.md: the results of one run as Markdown tables, built from the JSON report alone."""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .machine import machine_line


def _ms(microseconds: float | None) -> str:
    return "–" if microseconds is None else f"{microseconds / 1000:.2f}"


def _signed_ms(microseconds: float | None) -> str:
    return "–" if microseconds is None else f"{microseconds / 1000:+.2f}"


def _rps(value: float) -> str:
    return f"{value:,.0f}"


def _rss(peaks: Mapping[str, float]) -> str:
    return ", ".join(f"{role} {mib:.1f}" for role, mib in peaks.items()) or "–"


def _error_kinds(by_kind: Mapping[str, int]) -> str:
    return ", ".join(f"{count:,} {kind}" for kind, count in by_kind.items() if count)


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def throughput_table(configs: list[Mapping[str, Any]]) -> list[str]:
    lines = [
        _row(["configuration", "workers", "req/s (median)", "req/s per round", "p50 ms", "p99 ms",
              "vs nginx proxy_pass", "peak RSS MiB per process", "errors"]),
        _row(["---", "---:", "---:", "---", "---:", "---:", "---:", "---", "---:"]),
    ]
    for config in configs:
        summary = config.get("summary")
        if not summary:
            continue
        ratio = summary.get("vs_nginx_proxy")
        lines.append(_row([
            config["label"], str(config["workers"]), _rps(summary["median_rps"]),
            " / ".join(_rps(value) for value in summary["rps_runs"]),
            _ms(summary["p50_us"]), _ms(summary["p99_us"]),
            f"{ratio:.2f}×" if ratio is not None else "–",
            _rss(summary["rss_peak_mib"]), str(summary["errors"]),
        ]))
    return lines


def _by_round(config: Mapping[str, Any] | None) -> dict[int, Mapping[str, Any]]:
    return {run["round"]: run for run in config["runs"]} if config else {}


def paired_table(configs: list[Mapping[str, Any]]) -> list[str]:
    """The targets round by round: billable's cost against key-auth, and its p99 against nginx's,
    each compared within a round, where the machine's drift between rounds does not enter."""
    by_key = {config["key"]: config for config in configs}
    nginx = _by_round(by_key.get("nginx-proxy"))
    lines: list[str] = []
    for workers in sorted({config["workers"] for config in configs if config["kind"] == "tollway"}):
        keyauth = _by_round(by_key.get(f"tollway-keyauth-w{workers}"))
        billable = _by_round(by_key.get(f"tollway-keyauth-billable-w{workers}"))
        costs = [billable[n]["rps"] / keyauth[n]["rps"] - 1 for n in sorted(billable) if n in keyauth]
        added = [(billable[n]["p99_us"] - nginx[n]["p99_us"]) / 1000 for n in sorted(billable) if n in nginx]
        if not costs and not added:
            continue
        lines.append(_row([
            str(workers),
            " / ".join(f"{cost:+.1%}" for cost in costs) or "–",
            f"{statistics.median(costs):+.1%}" if costs else "–",
            " / ".join(f"{ms:+.2f}" for ms in added) or "–",
            f"{statistics.median(added):+.2f}" if added else "–",
            f"{sum(ms <= 1.0 for ms in added)} of {len(added)}" if added else "–",
        ]))
    if not lines:
        return []
    return [
        _row(["workers", "key-auth + billable vs key-auth, per round", "median", "p99 minus nginx's, ms, per round",
              "median", "rounds within 1 ms"]),
        _row(["---:", "---", "---:", "---", "---:", "---:"]),
        *lines,
    ]


def rate_limiting_table(configs: list[Mapping[str, Any]]) -> list[str]:
    """rate-limiting's cost over key-auth + billable, per policy, compared within each round (the
    issue's targets: local at most 10%, redis at most 35%; cluster has none)."""
    by_key = {config["key"]: config for config in configs}
    lines: list[str] = []
    for workers in sorted({config["workers"] for config in configs if config["kind"] == "tollway"}):
        billable = _by_round(by_key.get(f"tollway-keyauth-billable-w{workers}"))
        for policy, target in (("local", 0.10), ("redis", 0.35), ("cluster", None)):
            limited = _by_round(by_key.get(f"tollway-keyauth-billable-ratelimit-{policy}-w{workers}"))
            costs = [1 - limited[n]["rps"] / billable[n]["rps"] for n in sorted(limited) if n in billable]
            if not costs:
                continue
            median = statistics.median(costs)
            verdict = ["–", "–"] if target is None else [f"{target:.0%}", "yes" if round(median, 4) <= target else "no"]
            lines.append(_row([str(workers), policy, " / ".join(f"{cost:.1%}" for cost in costs), f"{median:.1%}",
                               *verdict]))
    if not lines:
        return []
    return [
        _row(["workers", "rate-limiting policy", "throughput lost vs key-auth + billable, per round", "median",
              "target", "met"]),
        _row(["---:", "---", "---", "---:", "---:", "---"]),
        *lines,
    ]


def fixed_rate_table(levels: list[Mapping[str, Any]]) -> list[str]:
    lines = [
        _row(["rate req/s", "configuration", "workers", "achieved req/s", "p50 ms", "p99 ms", "p999 ms",
              "added p50 ms", "added p99 ms", "added p999 ms", "errors"]),
        _row(["---:", "---", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---:"]),
    ]
    for level in levels:
        for result in level["results"]:
            summary = result.get("summary")
            if not summary:
                continue
            latency, added = summary["latency_us"], result.get("added_us", {})
            lines.append(_row([
                _rps(level["rate"]), result["label"], str(result["workers"]), _rps(summary["achieved_rps"]),
                _ms(latency["p50"]), _ms(latency["p99"]), _ms(latency["p999"]),
                _signed_ms(added.get("p50")), _signed_ms(added.get("p99")), _signed_ms(added.get("p999")),
                _error_kinds(summary.get("errors_by_kind", {})) or str(summary["errors"]),
            ]))
    return lines


def _fixed_rate_notes(levels: list[Mapping[str, Any]]) -> list[str]:
    notes = []
    for level in levels:
        notes.append(f"- {_rps(level['rate'])} req/s = {level['basis']}.")
        for result in level["results"]:
            summary = result.get("summary")
            if summary:
                lag, service = summary["send_lag_us"], summary["service_us"]
                notes.append(f"  - {result['label']}: generator send lag p50 {_ms(lag['p50'])} ms, "
                             f"p99 {_ms(lag['p99'])} ms; from actual send (uncorrected) p50 "
                             f"{_ms(service['p50'])} ms, p99 {_ms(service['p99'])} ms.")
    return notes


def _load_line(configs: list[Mapping[str, Any]]) -> list[str]:
    busy = [run["cpu_busy_before_pct"] for config in configs for run in config["runs"]
            if "cpu_busy_before_pct" in run]
    if not busy:
        return []
    return [f"- Other work on the machine: CPU {min(busy):.0f}% to {max(busy):.0f}% busy (median "
            f"{statistics.median(busy):.0f}%) in the second before each run, with the bench's own load stopped."]


def _failures(items: list[Mapping[str, Any]]) -> list[str]:
    """A line per configuration that failed a try or was dropped."""
    lines = []
    for item in items:
        name = f"{item['label']} ({item['workers']} worker{'s' if item['workers'] > 1 else ''})"
        if item.get("error"):
            lines.append(f"- {name}: dropped after: {item['error'].splitlines()[0]}")
        elif item.get("failures"):
            first = item["failures"][0].splitlines()[0]
            lines.append(f"- {name}: {len(item['failures'])} failed tr{'ies' if len(item['failures']) > 1 else 'y'}, "
                         f"measured on retry; first: {first}")
    return lines


def render_markdown(report: Mapping[str, Any]) -> str:
    """The whole latest.md for a report as written by the runner."""
    options = report["options"]
    configs = report["configs"]
    lines = [
        f"# Tollway benchmark, {report['started_at']}",
        "",
        f"- Machine: {machine_line(report['machine'])}",
        f"- Command: `{report.get('command', './scripts/bench.sh')}`",
        f"- Upstream: {report['upstream']}; every request is `GET /bench` with an `apikey` header.",
        f"- Throughput: wrk, {options['connections']} connections, {options['threads']} thread(s), "
        f"{options['duration']:g} s per run after a {options['warmup']:g} s warm-up, {options['rounds']} rounds "
        "interleaved (every configuration once per round, same order), median of the rounds. "
        "wrk, the upstream and the proxy share the machine's cores.",
        *_load_line(configs),
        "",
        "## Throughput (closed loop)",
        "",
        *throughput_table(configs),
        "",
    ]
    paired = paired_table(configs)
    if paired:
        lines += [
            "Billable's cost and its p99 against nginx's, compared within each round (the configurations of a "
            "round run minutes apart at most, so the machine's drift between rounds does not enter):",
            "",
            *paired,
            "",
        ]
    limited = rate_limiting_table(configs)
    if limited:
        lines += ["rate-limiting's cost (a limit never reached: every call counted, none refused), within each round:",
                  "", *limited, ""]
    levels = report.get("fixed_rate") or []
    if levels:
        lines += [
            "## Latency at a fixed rate (open loop, corrected for coordinated omission)",
            "",
            f"Constant rate over {options['rate_connections']} keep-alive connections, {options['rate_duration']:g} s "
            f"after a {options['warmup']:g} s warm-up, {options['rate_rounds']} rounds interleaved, median of the "
            "rounds. Latency is measured from each request's scheduled send time; \"added\" is Tollway minus "
            "nginx proxy_pass at the same rate. Percentiles cover answered requests only: "
            "`unanswered` ones were still waiting when the grace period after the schedule ended.",
            "",
            *fixed_rate_table(levels),
            "",
            *_fixed_rate_notes(levels),
            "",
        ]
    failures = _failures(configs) + _failures([result for level in levels for result in level["results"]])
    if failures:
        lines += ["## Failures", "", *failures, ""]
    ledger = report.get("ledger_report")
    if ledger is not None:
        lines += ["## Ledger report (bench/ledger_report.py)", "", "```json",
                  json.dumps(ledger, indent=2)[:4000], "```", ""]
    return "\n".join(lines)


def write_markdown(report: Mapping[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_markdown(report))
    return path
