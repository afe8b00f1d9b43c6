"""latest.png: throughput bars and p50/p99 latency for every configuration (matplotlib, Agg)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: the harness runs in terminals and CI

import matplotlib.pyplot as plt  # noqa: E402

from .machine import machine_line  # noqa: E402


def _name(config: Mapping[str, Any]) -> str:
    name = config["label"].replace(" (", "\n(")
    if config["kind"] == "tollway":
        name += f"\n{config['workers']} worker{'s' if config['workers'] > 1 else ''}"
    return name


def write_chart(report: Mapping[str, Any], path: Path) -> Path:
    """Draw the report's configurations (and fixed-rate latency, when measured) into path."""
    configs = [c for c in report["configs"] if c.get("summary")]
    levels = [level for level in report.get("fixed_rate") or [] if any(r.get("summary") for r in level["results"])]
    rows = 3 if levels else 2
    fig, axes = plt.subplots(rows, 1, figsize=(12, 4.2 * rows), constrained_layout=True)
    names = [_name(c) for c in configs]
    positions = list(range(len(configs)))

    ax = axes[0]
    rps = [c["summary"]["median_rps"] for c in configs]
    bars = ax.bar(positions, rps, color=["#888888" if c["kind"] != "tollway" else "#2a7ab9" for c in configs])
    for bar, config in zip(bars, configs, strict=True):
        ratio = config["summary"].get("vs_nginx_proxy")
        label = f"{bar.get_height():,.0f}" + (f"\n{ratio:.2f}× nginx" if ratio is not None else "")
        ax.annotate(label, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom",
                    fontsize=8)
    ax.set_ylabel("requests/s (median)")
    ax.set_title("Throughput (wrk, closed loop)")
    ax.set_xticks(positions, names, fontsize=8)
    ax.margins(y=0.2)

    ax = axes[1]
    width = 0.38
    p50 = [c["summary"]["p50_us"] / 1000 for c in configs]
    p99 = [c["summary"]["p99_us"] / 1000 for c in configs]
    ax.bar([p - width / 2 for p in positions], p50, width, label="p50", color="#5fa55a")
    ax.bar([p + width / 2 for p in positions], p99, width, label="p99", color="#d1603d")
    ax.set_ylabel("latency, ms")
    ax.set_title("Latency under full load (wrk)")
    ax.set_xticks(positions, names, fontsize=8)
    ax.legend()

    if levels:
        ax = axes[2]
        labels: list[str] = []
        series: dict[str, list[float]] = {"p50": [], "p99": [], "p999": []}
        for level in levels:
            for result in level["results"]:
                if result.get("summary"):
                    labels.append(f"{result['label']}\n@ {level['rate']:,} req/s")
                    for name, values in series.items():
                        values.append(result["summary"]["latency_us"][name] / 1000)
        spots = list(range(len(labels)))
        width = 0.27
        for offset, (name, values) in zip((-width, 0.0, width), series.items(), strict=True):
            ax.bar([s + offset for s in spots], values, width, label=name)
        ax.set_yscale("log")
        ax.set_ylabel("latency, ms (log)")
        ax.set_title("Latency at a fixed rate (open loop, from scheduled send time)")
        ax.set_xticks(spots, labels, fontsize=8)
        ax.legend()

    fig.suptitle(f"Tollway bench {report['started_at']}\n{machine_line(report['machine'])}", fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
