#!/usr/bin/env bash
# Sets up Tollway and runs the whole test suite (SQLite, and PostgreSQL on 127.0.0.1:5432).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
echo "ruff: lint" >&2
.venv/bin/ruff check tollway tests bench setup.py scripts
echo "mypy: type check" >&2
.venv/bin/mypy tollway
echo "pytest: the whole suite, about 4 to 6 minutes on 2 cores (a dot per test passed)" >&2
exec .venv/bin/pytest -q "$@"
