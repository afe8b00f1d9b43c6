"""An Admin API on a fresh database for the dashboard's tests (tests/admin/conftest.py's server)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from tests.admin.conftest import AdminServer, _bootstrap, serve
from tollway.config import Settings


@pytest.fixture
def admin(settings: Settings) -> Iterator[AdminServer]:
    asyncio.run(_bootstrap(settings))
    yield from serve(settings)


@pytest.fixture
def guarded_admin(sqlite_settings: Settings) -> Iterator[AdminServer]:
    """An Admin API with admin_token set."""
    settings = sqlite_settings.with_overrides(admin_token="s3cret-admin")
    asyncio.run(_bootstrap(settings))
    yield from serve(settings)
