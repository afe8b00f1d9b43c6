"""Declarative files against a real database: the `tollway config` command as a process, or the
import and export functions in this one."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.admin.conftest import _bootstrap
from tests.conftest import _fresh_settings
from tests.server.nodes import node_env
from tollway.config import Settings
from tollway.declarative.dump import export_document
from tollway.declarative.load import ImportReport, import_document
from tollway.store.db import run_with_database
from tollway.store.entities.catalog import Catalog

EXAMPLE = Path(__file__).parent / "fixtures" / "kong-example.yml"


@pytest.fixture
def db_settings(settings: Settings) -> Settings:
    """Settings on a fresh, bootstrapped database."""
    asyncio.run(_bootstrap(settings))
    return settings


@pytest.fixture
def other_db_settings(tmp_path: Path, database: str) -> Iterator[Settings]:
    """A second fresh, bootstrapped database of the same kind."""
    for fresh in _fresh_settings(tmp_path / "other", database):
        asyncio.run(_bootstrap(fresh))
        yield fresh


def config(settings: Settings, *args: str, cwd: Path | None = None) -> tuple[int, str, str]:
    """`tollway config ARGS` as a process (in `cwd`): exit code, stdout, stderr."""
    result = subprocess.run([sys.executable, "-m", "tollway", "config", *args], env=node_env(settings), cwd=cwd,
                            capture_output=True, text=True, timeout=120)
    return result.returncode, result.stdout, result.stderr


def load(settings: Settings, document: dict[str, Any] | str) -> ImportReport:
    """Import a document (or YAML text) in this process."""
    parsed = yaml.safe_load(document) if isinstance(document, str) else document
    return run_with_database(settings, lambda db: import_document(Catalog(settings, db), parsed))


def dump(settings: Settings) -> dict[str, Any]:
    return run_with_database(settings, lambda db: export_document(Catalog(settings, db)))
