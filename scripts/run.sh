#!/usr/bin/env bash
# Sets up Tollway and runs the quickstart (Ctrl-C stops it). Like every `tollway` command it uses
# the default prefix (~/.tollway, /usr/local/tollway as root) unless TOLLWAY_PREFIX says otherwise,
# so that `tollway report` or `tollway health` in another terminal find the same node.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
exec .venv/bin/tollway quickstart "$@"
