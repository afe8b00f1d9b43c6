"""Benchmark Tollway against nginx: `./scripts/bench.sh [--quick]` (or `.venv/bin/python bench/run.py`).

Starts an nginx `return 200` upstream, then measures, interleaved over >= 3 rounds: the upstream
directly, nginx proxy_pass, and Tollway (no plugins, key-auth, key-auth + billable; 1 and 2
workers) with wrk; then latency at a fixed rate with an open-loop generator. Writes
bench/results/<timestamp>.json, latest.md and latest.png. `--help` lists the options.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `bench.harness` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
