"""Runs a pip command with all its output in a log file, and tells on stderr what it is doing.

    python3 scripts/progress.py LOG -- COMMAND...

pip is silent for minutes while it installs dependencies and compiles the hot path: this reads
its verbose log as it grows and shows the step, the package or C file at hand, and the time spent
(one line rewritten in place on a terminal; a line per step and every 15 s elsewhere, as in CI).
The exit code is the command's.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time

STEPS = [  # (a line of pip's verbose log that starts a step, what the user is told)
    (re.compile(r"^Obtaining |^Collecting |^Requirement already satisfied"), "resolving dependencies"),
    (re.compile(r"Building editable for tollway"), "compiling the hot path"),
    (re.compile(r"^Installing collected packages"), "installing"),
]
DETAILS = [  # (pattern, how its match becomes the detail shown with the step)
    (re.compile(r"^Collecting (\S+)"), lambda m: m.group(1)),
    (re.compile(r"^  Downloading (\S+)"), lambda m: "downloading " + m.group(1).rsplit("/", 1)[-1]),
    (re.compile(r"tollway build: (\d+ of \d+ C files.*)"), lambda m: m.group(1)),
    (re.compile(r"tollway build: \[(\d+)/(\d+)\] compiled (\S+?\.c)"),
     lambda m: f"{m.group(1)} of {m.group(2)} C files compiled ({m.group(3).rsplit('/', 1)[-1]})"),
]
QUIET_INTERVAL = 15.0  # seconds between lines when stderr is not a terminal


class Status:
    def __init__(self, tty: bool) -> None:
        self.tty = tty
        self.started = time.monotonic()
        self.step = "starting"
        self.detail = ""
        self.shown_at = 0.0
        self.shown_step = ""

    def feed(self, line: str) -> None:
        for pattern, step in STEPS:
            if pattern.search(line) and step != self.step:
                self.step, self.detail = step, ""
        for pattern, detail in DETAILS:
            if match := pattern.search(line):
                self.detail = detail(match)

    def show(self) -> None:
        now = time.monotonic()
        text = f"  {self.step}{': ' + self.detail if self.detail else ''} ({now - self.started:.0f} s)"
        if self.tty:
            sys.stderr.write("\r\033[K" + text[:max(20, _columns() - 1)])
        elif self.step != "starting" and (self.step != self.shown_step or now - self.shown_at >= QUIET_INTERVAL):
            sys.stderr.write(text + "\n")
        else:
            return
        sys.stderr.flush()
        self.shown_at, self.shown_step = now, self.step

    def finish(self, ok: bool) -> None:
        if self.tty:
            sys.stderr.write("\r\033[K")
        elapsed = time.monotonic() - self.started
        sys.stderr.write(f"  {'done' if ok else 'failed'} in {elapsed:.0f} s\n")
        sys.stderr.flush()


def _columns() -> int:
    import shutil

    return shutil.get_terminal_size().columns


def run(log_path: str, command: list[str]) -> int:
    status = Status(tty=sys.stderr.isatty())
    with open(log_path, "ab") as log:
        start = log.tell()
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    pending = ""
    with open(log_path, errors="replace") as reader:
        reader.seek(start)
        while True:
            finished = proc.poll() is not None
            pending += reader.read()
            *lines, pending = pending.split("\n")
            for line in lines:
                status.feed(line)
            status.show()
            if finished:
                break
            time.sleep(0.5)
    status.finish(proc.returncode == 0)
    return proc.returncode


if __name__ == "__main__":
    if len(sys.argv) < 4 or sys.argv[2] != "--":
        sys.exit("usage: progress.py LOG -- COMMAND...")
    sys.exit(run(sys.argv[1], sys.argv[3:]))
