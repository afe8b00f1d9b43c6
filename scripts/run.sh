#!/usr/bin/env bash
# Sets up Tollway and runs the quickstart on the embedded SQLite default (Ctrl-C stops it).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
export TOLLWAY_PREFIX=${TOLLWAY_PREFIX:-$PWD/tollway-prefix}
exec .venv/bin/tollway quickstart "$@"
