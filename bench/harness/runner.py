"""The run itself: every configuration, interleaved round by round, then latency at a fixed rate.

Round r loads every configuration once, in the same order (direct, nginx, Tollway ...), so a
drift of the machine (another process, thermal, the page cache) hits every configuration alike
instead of one of them; the median over the rounds is reported.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import psutil

from .machine import describe_machine
from .nginx import NginxServer
from .openloop import OpenLoopPlan, run_open_loop
from .rss import RssSampler
from .summary import REFERENCE, add_ratios, added_latency, summarize_open_loop, summarize_runs
from .targets import DirectTarget, NginxProxyTarget, Target, TollwayTarget
from .tollway_node import PROFILES
from .wrk import WrkResult, run_wrk, write_done_script

ROOT = Path(__file__).resolve().parents[2]
FIXED_RATE_TOLLWAY = "tollway-keyauth-billable-w1"
Say = Callable[[str], None]


def fixed_rate_levels(nginx_max: float, tollway_max: float | None) -> list[tuple[str, int]]:
    """The rates of the fixed-rate runs, with what each is: half of nginx proxy_pass's maximum, and
    half of Tollway's own when Tollway is below 0.9× nginx. Near or above its own maximum an
    open-loop queue only grows, so half of nginx's then measures Tollway's queue more than its cost."""
    levels = [("half of nginx proxy_pass's maximum", round(nginx_max / 2))]
    if tollway_max and tollway_max < nginx_max * 0.9:
        levels.append(("half of Tollway key-auth + billable's maximum", round(tollway_max / 2)))
    return levels


@dataclass(frozen=True)
class BenchOptions:
    """How long and how hard to load; `quick()` gives a run of a couple of minutes."""

    duration: float = 10.0
    warmup: float = 2.0
    rounds: int = 3
    connections: int = 50
    threads: int = 1
    rate_duration: float = 10.0
    rate_rounds: int = 3
    rate_connections: int = 50
    tollway: bool = True
    tollway_workers: tuple[int, ...] = (1, 2)
    tollway_log_level: str = "notice"
    only: tuple[str, ...] = ()
    attempts: int = 2
    wait_quiet: float = 0.0
    quiet_below: float = 25.0

    @classmethod
    def quick(cls, **overrides: Any) -> BenchOptions:
        values: dict[str, Any] = {"duration": 3.0, "warmup": 1.0, "rate_duration": 3.0}
        values.update(overrides)
        return cls(**values)

    def validate(self) -> None:
        problems = []
        if self.rounds < 1 or self.rate_rounds < 1:
            problems.append("rounds must be at least 1")
        if self.duration < 1 or self.rate_duration < 1:
            problems.append("durations must be at least 1 s (wrk counts whole seconds)")
        if self.attempts < 1:
            problems.append("attempts must be at least 1")
        if self.connections < self.threads or self.threads < 1:
            problems.append("need at least one thread and at least as many connections as threads")
        if problems:
            raise ValueError("; ".join(problems))


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Bench:
    """One benchmark run in `workdir` (nginx prefixes, Tollway prefixes, the wrk script)."""

    def __init__(self, options: BenchOptions, workdir: Path, say: Say = print) -> None:
        options.validate()
        self.options = options
        self.workdir = workdir
        self.say = say
        self.script = write_done_script(workdir)

    def targets(self, upstream: NginxServer) -> list[Target]:
        """Every configuration, in the order each round loads them."""
        targets: list[Target] = [DirectTarget(upstream), NginxProxyTarget(upstream.port, self.workdir / "nginx-proxy")]
        if self.options.tollway:
            for workers in self.options.tollway_workers:
                for profile in PROFILES:
                    targets.append(TollwayTarget(profile, workers, self.workdir, upstream.url + "/",
                                                 self.options.tollway_log_level))
        if self.options.only:
            keep = set(self.options.only) | {REFERENCE}
            targets = [t for t in targets if t.key in keep]
        return targets

    def run(self) -> dict[str, Any]:
        started = _now()
        machine = describe_machine(ROOT)  # before the run: the commit that is measured
        with NginxServer.upstream(self.workdir / "upstream") as upstream:
            targets = self.targets(upstream)
            configs = {t.key: {**t.describe(), "runs": [], "failures": [], "error": None} for t in targets}
            live = self._setup(targets, configs)
            self._throughput(live, configs)
            for config in configs.values():
                config["summary"] = summarize_runs(config["runs"]) if config["runs"] else None
            add_ratios(list(configs.values()))
            fixed_rate = self._fixed_rate(live, configs)
        return {
            "version": 1,
            "started_at": started,
            "finished_at": _now(),
            "machine": machine,
            "options": {**asdict(self.options), "tollway_workers": list(self.options.tollway_workers)},
            "upstream": "nginx return 200, worker_processes 1, access_log off",
            "configs": list(configs.values()),
            "fixed_rate": fixed_rate,
        }

    # Throughput ------------------------------------------------------------------------------

    def _setup(self, targets: Sequence[Target], configs: dict[str, dict[str, Any]]) -> list[Target]:
        live = []
        for target in targets:
            try:
                target.setup()
                live.append(target)
            except Exception as exc:  # one broken configuration must not sink the others
                configs[target.key]["error"] = f"setup failed: {exc}"
                self.say(f"{target.key}: setup failed: {exc}")
        return live

    def _throughput(self, targets: list[Target], configs: dict[str, dict[str, Any]]) -> None:
        options = self.options
        for number in range(1, options.rounds + 1):
            for target in list(targets):
                run = self._attempt(partial(self._measure, target, number), configs[target.key],
                                    f"[round {number}/{options.rounds}] {target.key}")
                if run is None:
                    targets.remove(target)
                    continue
                configs[target.key]["runs"].append(run)
                self.say(f"[round {number}/{options.rounds}] {target.key:30} {run['rps']:>10,.0f} req/s  "
                         f"p50 {run['p50_us'] / 1000:6.2f} ms  p99 {run['p99_us'] / 1000:6.2f} ms  "
                         f"errors {sum(run['errors'].values())}")

    def _attempt(self, measure: Callable[[], dict[str, Any]], record: dict[str, Any],
                 what: str) -> dict[str, Any] | None:
        """Run a measurement, again after a failure (up to options.attempts); None when every try failed.

        Failures are kept in record['failures']; when no try is left, record['error'] says why.
        """
        for attempt in range(1, self.options.attempts + 1):
            try:
                return measure()
            except Exception as exc:  # one broken configuration must not sink the others
                record["failures"].append(f"{what}, attempt {attempt}: {exc}")
                self.say(f"{what}: attempt {attempt} FAILED: {str(exc).splitlines()[0]}")
        record["error"] = record["failures"][-1]
        return None

    def _quiet(self) -> float:
        """System-wide CPU busy % over one second with the bench's load stopped; waits for a quieter
        machine (below options.quiet_below) for up to options.wait_quiet seconds."""
        began = time.monotonic()
        while True:
            busy = float(psutil.cpu_percent(interval=1.0))
            waited = time.monotonic() - began
            if busy < self.options.quiet_below or waited >= self.options.wait_quiet:
                if waited > 1.5:
                    self.say(f"waited {waited:.0f} s for a quieter machine: now CPU {busy:.0f}% busy")
                return busy

    def _measure(self, target: Target, number: int) -> dict[str, Any]:
        """Start the target, warm it up, load it once with wrk while sampling RSS, stop it."""
        options = self.options
        busy = self._quiet()
        target.start()
        try:
            self._wrk(target, options.warmup)
            loadavg = os.getloadavg()[0]
            with RssSampler(target.processes) as sampler:
                result = self._wrk(target, options.duration)
        finally:
            target.stop()
        return {"round": number, **result.to_dict(), "rss_peak_bytes": sampler.peaks,
                "loadavg_1m_before": round(loadavg, 2), "cpu_busy_before_pct": round(busy, 1)}

    def _wrk(self, target: Target, duration: float) -> WrkResult:
        return run_wrk(target.url, connections=self.options.connections, threads=self.options.threads,
                       duration=duration, script=self.script, headers=target.headers)

    # Latency at a fixed rate -----------------------------------------------------------------

    def _fixed_rate(self, targets: Sequence[Target], configs: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
        """Open-loop latency of Tollway (key-auth + billable, 1 worker) against nginx, same rates."""
        by_key = {t.key: t for t in targets}
        nginx, tollway = by_key.get(REFERENCE), by_key.get(FIXED_RATE_TOLLWAY)
        if nginx is None or tollway is None or not configs[REFERENCE].get("summary"):
            self.say("fixed-rate latency skipped: nginx proxy_pass or Tollway key-auth + billable (1 worker) "
                     "was not measured")
            return []
        tollway_summary = configs[FIXED_RATE_TOLLWAY].get("summary")
        levels = fixed_rate_levels(configs[REFERENCE]["summary"]["median_rps"],
                                   tollway_summary["median_rps"] if tollway_summary else None)
        return [self._fixed_rate_level(basis, rate, [nginx, tollway]) for basis, rate in levels]

    def _fixed_rate_level(self, basis: str, rate: int, targets: Sequence[Target]) -> dict[str, Any]:
        options = self.options
        runs: dict[str, list[dict[str, Any]]] = {t.key: [] for t in targets}
        records: dict[str, dict[str, Any]] = {t.key: {"failures": [], "error": None} for t in targets}
        for number in range(1, options.rate_rounds + 1):
            for target in targets:
                if records[target.key]["error"]:
                    continue
                what = f"[rate {rate}/s round {number}/{options.rate_rounds}] {target.key}"
                run = self._attempt(partial(self._measure_rate, target, rate), records[target.key], what)
                if run is None:
                    continue
                runs[target.key].append(run)
                ms = {name: value / 1000 for name, value in run["latency_us"].items()}
                self.say(f"{what:55} achieved {run['achieved_rps']:>9,.0f}/s  p50 {ms['p50']:7.2f} ms  "
                         f"p99 {ms['p99']:8.2f} ms  p999 {ms['p999']:8.2f} ms")
        summaries = {t.key: summarize_open_loop(runs[t.key]) if runs[t.key] else None for t in targets}
        results: list[dict[str, Any]] = [
            {"key": t.key, "label": t.label, "workers": t.workers, "runs": runs[t.key],
             "summary": summaries[t.key], **records[t.key]}
            for t in targets
        ]
        nginx, tollway = summaries[targets[0].key], summaries[targets[1].key]
        if nginx and tollway:
            results[1]["added_us"] = added_latency(tollway, nginx)
        return {"basis": basis, "rate": rate, "results": results}

    def _measure_rate(self, target: Target, rate: int) -> dict[str, Any]:
        """Start the target, send the constant rate (warm-up included), stop it."""
        busy = self._quiet()
        target.start()
        try:
            result = run_open_loop(self._plan(target, rate))
        finally:
            target.stop()
        return {**result.to_dict(), "cpu_busy_before_pct": round(busy, 1)}

    def _plan(self, target: Target, rate: int) -> OpenLoopPlan:
        """The open-loop plan for a started target (Tollway takes new ports at every start)."""
        return OpenLoopPlan(port=target.port, rate=rate, duration=self.options.rate_duration,
                            path=target.path, headers=target.headers,
                            connections=self.options.rate_connections, warmup=self.options.warmup)
