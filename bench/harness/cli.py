"""`bench/run.py`'s command line: run the bench, write the JSON, latest.md and latest.png."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from .report import write_markdown
from .runner import ROOT, Bench, BenchOptions
from .tools import missing_tools

RESULTS = ROOT / "bench" / "results"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench/run.py",
        description="Tollway against nginx on loopback: throughput (wrk) and latency at a fixed rate.")
    load = parser.add_argument_group("load")
    load.add_argument("--quick", action="store_true", help="3 s runs and 1 s warm-ups (a few minutes in all)")
    load.add_argument("--duration", type=float, help="seconds per wrk run (default 10, --quick 3)")
    load.add_argument("--warmup", type=float, help="seconds of warm-up before each run (default 2, --quick 1)")
    load.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    load.add_argument("--connections", type=int, default=50, help="wrk connections (default 50)")
    load.add_argument("--threads", type=int, default=1, choices=(1, 2), help="wrk threads (default 1)")
    load.add_argument("--rate-duration", type=float, help="seconds per fixed-rate run (default: --duration)")
    load.add_argument("--rate-rounds", type=int, default=3, help="fixed-rate rounds (default 3)")
    load.add_argument("--rate-connections", type=int, default=50, help="fixed-rate connections (default 50)")
    load.add_argument("--attempts", type=int, default=2, help="tries per measurement before a configuration "
                                                              "is dropped (default 2)")
    load.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                      help="before each run, wait up to this long for the machine's CPU to be less busy than "
                           "--quiet-below (default 0: only record how busy it was)")
    load.add_argument("--quiet-below", type=float, default=25.0, metavar="PERCENT", help="default 25")
    which = parser.add_argument_group("configurations")
    which.add_argument("--no-tollway", action="store_true", help="measure only the upstream and nginx")
    which.add_argument("--tollway-workers", default="1,2", help="worker counts, comma separated (default 1,2)")
    which.add_argument("--only", default="", help="configuration keys to run, comma separated "
                                                  "(e.g. tollway-keyauth-billable-w1; nginx-proxy always runs)")
    which.add_argument("--log-level", default="notice", help="Tollway's log_level (default notice)")
    out = parser.add_argument_group("output")
    out.add_argument("--results-dir", type=Path, default=RESULTS, help="default bench/results")
    out.add_argument("--keep-workdir", action="store_true", help="keep the temp dir (nginx and Tollway prefixes)")
    out.add_argument("--from-json", type=Path, help="only redraw latest.md and latest.png from a results file")
    out.add_argument("--report-bench", action="store_true",
                     help="also run bench/ledger_report.py, if present, and include its output")
    out.add_argument("--report-bench-args", default=None,
                     help="arguments for bench/ledger_report.py (default: --json when it offers it)")
    return parser


def options_from(args: argparse.Namespace) -> BenchOptions:
    values: dict[str, Any] = {
        "rounds": args.rounds, "connections": args.connections, "threads": args.threads,
        "rate_rounds": args.rate_rounds, "rate_connections": args.rate_connections,
        "attempts": args.attempts, "wait_quiet": args.wait_quiet, "quiet_below": args.quiet_below,
        "tollway": not args.no_tollway, "tollway_log_level": args.log_level,
        "tollway_workers": tuple(int(w) for w in args.tollway_workers.split(",") if w.strip()),
        "only": tuple(key.strip() for key in args.only.split(",") if key.strip()),
    }
    if args.duration is not None:
        values["duration"] = args.duration
    if args.warmup is not None:
        values["warmup"] = args.warmup
    values["rate_duration"] = args.rate_duration or values.get("duration", 3.0 if args.quick else 10.0)
    return BenchOptions.quick(**values) if args.quick else BenchOptions(**values)


def write_outputs(report: dict[str, Any], results_dir: Path, json_path: Path | None = None) -> list[Path]:
    """The timestamped JSON (unless given), latest.md and latest.png in results_dir."""
    results_dir.mkdir(parents=True, exist_ok=True)
    written = []
    if json_path is None:
        stamp = report["started_at"].replace("-", "").replace(":", "")
        json_path = results_dir / f"{stamp}.json"
        json_path.write_text(json.dumps(report, indent=2) + "\n")
        written.append(json_path)
    written.append(write_markdown(report, results_dir / "latest.md"))
    try:
        from .chart import write_chart
    except ImportError:
        print("matplotlib is not installed: no latest.png (pip install matplotlib)", file=sys.stderr)
    else:
        written.append(write_chart(report, results_dir / "latest.png"))
    return written


def _say(message: str) -> None:
    print(f"{datetime.now().strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.from_json:
        report = json.loads(args.from_json.read_text())
        for path in write_outputs(report, args.results_dir, json_path=args.from_json):
            print(path)
        return 0
    missing = missing_tools("nginx", "wrk")
    if missing:
        print(f"missing: {', '.join(missing)}; install with: apt-get install -y {' '.join(missing)} "
              "(./scripts/bench.sh does so when run as root)", file=sys.stderr)
        return 2
    try:
        options = options_from(args)
        options.validate()
    except ValueError as exc:
        print(f"bench/run.py: {exc}", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="tollway-bench-"))
    ok = False
    try:
        report = Bench(options, workdir, say=_say).run()
        report["command"] = os.environ.get("BENCH_COMMAND") or " ".join(["bench/run.py", *(argv or sys.argv[1:])])
        if args.report_bench:
            from .ledger_hook import run_ledger_report

            _say("running bench/ledger_report.py (--report-bench)")
            extra = args.report_bench_args.split() if args.report_bench_args is not None else None
            report["ledger_report"] = run_ledger_report(extra)
            _say(f"ledger report: {report['ledger_report']['status']}")
        for path in write_outputs(report, args.results_dir):
            print(path)
        # Keep the prefixes and logs when something failed, to read what went wrong.
        ok = not any(config["failures"] or config["error"] for config in report["configs"])
    except KeyboardInterrupt:
        _say("interrupted")
        return 130
    finally:
        if ok and not args.keep_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            _say(f"work directory kept: {workdir}")
    return 0
