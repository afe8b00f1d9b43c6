#!/usr/bin/env bash
# Sets up Tollway and runs the whole test suite (SQLite, and PostgreSQL on 127.0.0.1:5432).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
.venv/bin/ruff check tollway tests bench setup.py
.venv/bin/mypy tollway
exec .venv/bin/pytest -q "$@"
