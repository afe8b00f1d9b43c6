#!/usr/bin/env bash
# Benchmarks Tollway against nginx on loopback (bench/run.py): results in bench/results/.
#   ./scripts/bench.sh            # full run, about 10 minutes
#   ./scripts/bench.sh --quick    # 3 s runs, a few minutes
#   ./scripts/bench.sh --help     # every option
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

if ! .venv/bin/python -c 'import matplotlib' 2>/dev/null; then
  echo "installing matplotlib (for bench/results/latest.png)" >&2
  if grep -q '^bench *=' pyproject.toml; then
    .venv/bin/python -m pip install -q -e '.[bench]' 2>&1 | grep -v '^WARNING: Location' || true
  else
    .venv/bin/python -m pip install -q 'matplotlib>=3.8' 2>&1 | grep -v '^WARNING: Location' || true
  fi
fi

have() { command -v "$1" >/dev/null || [ -x "/usr/sbin/$1" ]; }
missing=()
for tool in nginx wrk; do have "$tool" || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing ${missing[*]}" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "the bench needs ${missing[*]}: sudo apt-get install -y ${missing[*]}" >&2; exit 1
  fi
fi

export BENCH_COMMAND="./scripts/bench.sh${*:+ $*}"
exec .venv/bin/python bench/run.py "$@"
