#!/usr/bin/env bash
# Creates .venv with Tollway and its test tools; safe to run again. Sourced by run.sh and test.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "Tollway needs Python 3.11 or newer as '$PYTHON' (set PYTHON=...)" >&2; exit 1
fi
if [ ! -x .venv/bin/python ]; then
  if ! "$PYTHON" -m venv .venv 2>/dev/null; then
    rm -rf .venv
    # Debian ships venv separately; install it when we may.
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
      "$PYTHON" -m venv .venv
    else
      echo "python3 -m venv failed; install python3-venv (Debian: sudo apt-get install python3-venv)" >&2; exit 1
    fi
  fi
fi
stamp=.venv/.tollway-installed
# The proxy's hot path is compiled in place (setup.py), and a compiled module shadows its
# source: build again whenever one of those sources changed since the last build.
stale=
for so in $(find tollway -name '*.so' 2>/dev/null); do
  [ "${so%%.*}.py" -nt "$so" ] && stale=1
  grep -q "\"${so%%.*}.py\"" setup.py || stale=1  # no longer in setup.py's HOT_PATH
done
install() {  # quiet unless it fails; the log stays in .venv/install.log
  .venv/bin/python -m pip install -q -e '.[test]' >.venv/install.log 2>&1 && return 0
  [ -n "${quiet_failure:-}" ] || grep -v '^WARNING: Location' .venv/install.log >&2
  return 1
}
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ setup.py -nt "$stamp" ] || [ -n "$stale" ]; then
  .venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
  # Only what this build compiles may shadow a source: drop the previous build's modules first.
  find tollway -name '*.so' -delete; rm -f tollway_hot_path__mypyc*.so
  if [ -n "${TOLLWAY_PURE_PYTHON:-}" ] || ! quiet_failure=1 install; then
    if [ -z "${TOLLWAY_PURE_PYTHON:-}" ]; then
      echo "compiling the hot path failed (see .venv/install.log; no C compiler?):" \
           "installing it as plain Python, which behaves the same, slower" >&2
    fi
    TOLLWAY_PURE_PYTHON=1 install
    touch .venv/.tollway-pure-python
  else
    rm -f .venv/.tollway-pure-python
  fi
  .venv/bin/python -c 'import tollway, uvloop, httptools, sqlalchemy, asyncpg, aiosqlite, starlette, pytest'
  touch "$stamp"
fi
# Tells the tests (tests/test_compiled.py) that this build is plain Python.
if [ -f .venv/.tollway-pure-python ]; then export TOLLWAY_PURE_PYTHON=1; fi
