"""Migrations: the runner's API, and the core subsystem's migrations (`NNN_name.py` beside it).

The runner lives in runner.py (a `migrations.py` module could not sit beside this package);
this package re-exports it so that callers write `from tollway.store import migrations`.
"""

from tollway.store.migrations.runner import (
    CORE,
    Migration,
    SubsystemState,
    bootstrap,
    ensure_bootstrapped,
    ensure_up_to_date,
    is_bootstrapped,
    known_migrations,
    list_state,
    pending,
    reset,
    up,
)

__all__ = ["CORE", "Migration", "SubsystemState", "bootstrap", "ensure_bootstrapped", "ensure_up_to_date",
           "is_bootstrapped", "known_migrations", "list_state", "pending", "reset", "up"]
