"""`--report-bench`: run bench/ledger_report.py (owned by the metering work) and keep its output.

The script is optional: when it is absent the hook says so and the run goes on. Its output is
kept as JSON: the whole of stdout when it is JSON, else the last line that is a JSON object, else
the text lines as they are.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "ledger_report.py"


def parse_output(stdout: str) -> Any:
    """The JSON in a script's stdout, or {'lines': [...]} when it printed none."""
    text = stdout.strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    return {"lines": text.splitlines()}


def default_args(script: Path = SCRIPT) -> list[str]:
    """`--json` when the script offers it (it says so in its source), else nothing."""
    try:
        return ["--json"] if "--json" in script.read_text() else []
    except OSError:
        return []


def run_ledger_report(args: Sequence[str] | None = None, script: Path = SCRIPT,
                      timeout: float = 1800) -> dict[str, Any]:
    """{'status': 'absent' | 'ok' | 'failed', ...}; never raises for a missing or failing script."""
    if not script.is_file():
        return {"status": "absent", "reason": f"{script.relative_to(ROOT)} does not exist"}
    command = [sys.executable, str(script), *(default_args(script) if args is None else args)]
    try:
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"status": "failed", "command": command[1:], "reason": f"timed out after {timeout:.0f}s"}
    if result.returncode != 0:
        return {"status": "failed", "command": command[1:], "returncode": result.returncode,
                "stderr": result.stderr.strip()[-2000:]}
    return {"status": "ok", "command": command[1:], "output": parse_output(result.stdout)}
