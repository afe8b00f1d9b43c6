#!/usr/bin/env bash
# Sets up Tollway and runs the whole test suite (SQLite, and PostgreSQL on 127.0.0.1:5432).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing Debian's chromium for the web page tests (a minute or two); log: .venv/apt.log" >&2
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >.venv/apt.log 2>&1 \
      || echo "could not install chromium (see .venv/apt.log): the web page tests will say so" >&2
  else
    echo "no chromium here: the web page tests are skipped (Debian: sudo apt-get install chromium)" >&2
  fi
fi
echo "ruff: lint" >&2
.venv/bin/ruff check tollway tests bench setup.py scripts examples
echo "mypy: type check" >&2
.venv/bin/mypy tollway
# Two test processes (pytest-xdist), a file each at a time: most tests wait on real processes and
# sockets, so two share two cores well. `./scripts/test.sh -n 0` runs them one at a time.
echo "pytest: the whole suite in 2 processes, about 6 minutes on 2 cores (a dot per test passed)" >&2
exec .venv/bin/pytest -q -n 2 --dist loadfile "$@"
