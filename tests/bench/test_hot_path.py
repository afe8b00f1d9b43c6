"""bench/hot_path.py drives the real protocol objects; a short run must serve and meter every request."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_hot_path_bench_serves_and_meters_every_request() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "hot_path.py"), "--requests", "3000"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    found = re.fullmatch(r"([\d.]+) us per request \(key-auth\+billable, 3000 requests\)\n", result.stdout)
    assert found is not None, result.stdout
    assert 0 < float(found.group(1)) < 10_000
