"""From runs to the numbers the report shows: medians, ratios, peaks, latency added by Tollway.

Pure functions over the JSON-able dictionaries the runner records, so the report and chart can
be rebuilt from a results file and tested without any tool installed.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

REFERENCE = "nginx-proxy"
MIB = 1024 * 1024


def median(values: Iterable[float]) -> float:
    items = list(values)
    return float(statistics.median(items)) if items else 0.0


def summarize_runs(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Median rps and latency over the runs, the highest RSS per process, and the error count."""
    requests = sum(int(run["requests"]) for run in runs)
    errors = sum(sum(run["errors"].values()) for run in runs)
    peaks: dict[str, int] = {}
    for run in runs:
        for role, rss in run["rss_peak_bytes"].items():
            peaks[role] = max(peaks.get(role, 0), int(rss))
    return {
        "median_rps": round(median(run["rps"] for run in runs), 1),
        "rps_runs": [round(float(run["rps"]), 1) for run in runs],
        "p50_us": median(run["p50_us"] for run in runs),
        "p99_us": median(run["p99_us"] for run in runs),
        "p999_us": median(run["p999_us"] for run in runs),
        "rss_peak_mib": {role: round(rss / MIB, 1) for role, rss in sorted(peaks.items())},
        "errors": errors,
        "error_rate": round(errors / requests, 6) if requests else 0.0,
    }


def add_ratios(configs: Sequence[dict[str, Any]], reference: str = REFERENCE) -> None:
    """Set summary['vs_nginx_proxy'] = median rps / the reference's median rps, in place."""
    base = next((c["summary"]["median_rps"] for c in configs if c["key"] == reference and c.get("summary")),
                0.0)
    for config in configs:
        summary = config.get("summary")
        if summary:
            summary["vs_nginx_proxy"] = round(summary["median_rps"] / base, 3) if base else None


def summarize_open_loop(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Median over rounds of each percentile, of the achieved rate, and the sum of errors."""
    by_kind: dict[str, int] = {}
    for run in runs:
        for kind, count in run["errors"].items():
            by_kind[kind] = by_kind.get(kind, 0) + int(count)
    result: dict[str, Any] = {
        "achieved_rps": round(median(run["achieved_rps"] for run in runs), 1),
        "errors": sum(by_kind.values()),
        "errors_by_kind": by_kind,
        "measured": sum(int(run["measured"]) for run in runs),
    }
    for series in ("latency_us", "service_us", "send_lag_us"):
        names = runs[0][series].keys() if runs else ()
        result[series] = {name: round(median(run[series][name] for run in runs), 1) for name in names}
    return result


def added_latency(tollway: Mapping[str, Any], nginx: Mapping[str, Any]) -> dict[str, float]:
    """Tollway's corrected latency percentiles minus nginx's, at the same rate (µs)."""
    ours, theirs = tollway["latency_us"], nginx["latency_us"]
    return {name: round(ours[name] - theirs[name], 1) for name in ("p50", "p99", "p999") if name in ours}
