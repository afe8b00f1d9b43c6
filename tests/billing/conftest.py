"""Billing tests share the Admin API fixtures (`admin`, `api`) of tests/admin."""

from tests.admin.conftest import admin, api  # noqa: F401
