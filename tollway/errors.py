"""Tollway's exception tree.

    TollwayError                 anything Tollway raises on purpose
    ├── ConfigError              a bad setting (CLI: one line, exit 1)
    ├── StoreError               the database layer
    │   ├── NotBootstrapped      the database has no Tollway schema yet
    │   ├── StoreUnavailable     the database cannot be reached (Admin API: 503)
    │   ├── UniqueViolation      a unique field is taken (Admin API: 409)
    │   └── ForeignKeyViolation  a referenced entity does not exist (Admin API: 400)
    └── NodeError                the running node (pid file, signals, ports)

Errors are raised where they start and translated where they cross a boundary: the CLI turns
a TollwayError into one line on stderr and exit code 1; the Admin API turns store errors into
Kong's JSON error shape.
"""

from __future__ import annotations


class TollwayError(Exception):
    """Base of every error Tollway raises on purpose."""


class ConfigError(TollwayError):
    """A setting is unknown or has a value of the wrong kind."""


class StoreError(TollwayError):
    """The database layer failed."""


class NotBootstrapped(StoreError):
    def __init__(self, message: str = "the database is not bootstrapped; run 'tollway migrations bootstrap'"):
        super().__init__(message)


class StoreUnavailable(StoreError):
    """The database cannot be reached right now."""


class UniqueViolation(StoreError):
    def __init__(self, fields: dict[str, object]):
        self.fields = fields
        super().__init__(f"unique violation on {fields!r}")


class ForeignKeyViolation(StoreError):
    def __init__(self, field: str, ref: dict[str, object]):
        self.field = field
        self.ref = ref
        super().__init__(f"foreign key violation on {field}: {ref!r}")


class NodeError(TollwayError):
    """The running node cannot be reached, started or signalled."""
