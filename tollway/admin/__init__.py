"""The Kong-compatible Admin API: `create_app(settings, db, on_change=None)` (see app.py)."""

from tollway.admin.app import create_app
from tollway.admin.context import AdminContext

__all__ = ["AdminContext", "create_app"]
