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
      echo "installing python3-venv (Debian ships it apart from Python)" >&2
      apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
      "$PYTHON" -m venv .venv
    else
      echo "python3 -m venv failed; install python3-venv (Debian: sudo apt-get install python3-venv)" >&2; exit 1
    fi
  fi
fi
stamp=.venv/.tollway-installed
log=.venv/install.log
# The proxy's hot path is compiled in place (setup.py), and a compiled module shadows its
# source: build again whenever one of those sources changed since the last build.
stale=
for so in $(find tollway -name '*.so' 2>/dev/null); do
  source=${so%%.*}.py
  [ -f "${so%%.*}.c" ] && source=${so%%.*}.c  # a module written in C (setup.py's C_MODULES)
  [ "$source" -nt "$so" ] && stale=1
  grep -q "\"$source\"" setup.py || stale=1  # no longer in setup.py's HOT_PATH or C_MODULES
done
pip_install() {  # pip install "$@", its output in the log; progress on stderr
  .venv/bin/python scripts/progress.py "$log" -- .venv/bin/python -m pip install -v "$@"
}
install() {
  # The build tools go into .venv itself (no throwaway build environment per install): setup.py
  # keeps the compiled objects in build/temp and compiles again only the C files that changed.
  pip_install --no-build-isolation -e '.[test]' && return 0
  [ -n "${quiet_failure:-}" ] || grep -v '^WARNING: Location' "$log" | tail -30 >&2
  return 1
}
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ setup.py -nt "$stamp" ] || [ -n "$stale" ]; then
  if [ ! -f "$stamp" ]; then
    echo "Setting up Tollway in .venv: its dependencies, then the proxy's hot path compiled to C with" \
         "mypyc (the first time about 1 to 2 minutes on 2 cores; after a change only the modules that" \
         "changed are compiled again). Full log: $log" >&2
  else
    echo "Rebuilding Tollway in .venv (setup.py, pyproject.toml or a compiled module changed). Full log: $log" >&2
  fi
  : >"$log"
  build_requires=$(.venv/bin/python -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"])')
  echo " pip and the build tools ($build_requires)" >&2
  # shellcheck disable=SC2086  # one argument per requirement
  pip_install --upgrade pip $build_requires
  # Only what this build compiles may shadow a source: drop the previous build's modules first.
  find tollway -name '*.so' -delete; rm -f tollway_hot_path__mypyc*.so
  echo " Tollway, its dependencies and its compiled hot path" >&2
  if [ -n "${TOLLWAY_PURE_PYTHON:-}" ] || ! quiet_failure=1 install; then
    if [ -z "${TOLLWAY_PURE_PYTHON:-}" ]; then
      echo "compiling the hot path failed (see $log; no C compiler?):" \
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
