"""Tollway's exception tree.

    TollwayError                     anything Tollway raises on purpose
    ├── ConfigError                  a bad setting, or an enabled plugin not installed (CLI: one line, exit 1)
    ├── StoreError                   the database layer
    │   ├── NotBootstrapped          the database has no Tollway schema yet
    │   ├── StoreUnavailable         the database cannot be reached (Admin API: 503)
    │   └── EntityError              an entity cannot be read or written as asked (Admin API: 4xx)
    │       ├── SchemaViolation      fields that fail their schema (400)
    │       ├── NotFound             no such entity (404)
    │       ├── PrimaryKeyViolation  the id is taken (409)
    │       ├── UniqueViolation      a unique field is taken (409)
    │       ├── ForeignKeyViolation  a referenced entity does not exist (400)
    │       ├── ForeignKeysUnresolved  a reference by name that names nothing (400)
    │       └── ReferencedBy         other entities still reference this one (400)
    └── NodeError                    the running node (pid file, signals, ports)

Errors are raised where they start and translated where they cross a boundary: the CLI turns
a TollwayError into one line on stderr and exit code 1; the Admin API turns store errors into
Kong's JSON error shapes (tollway/admin/errors.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


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


class EntityError(StoreError):
    """An entity cannot be read or written as asked."""


class SchemaViolation(EntityError):
    """`fields` maps each field to its problem: a message, a dict for a record's fields, a list for
    an array's elements; `@entity` holds problems of the whole entity."""

    def __init__(self, fields: Mapping[str, Any]) -> None:
        self.fields = dict(fields)
        super().__init__(f"schema violation: {self.fields!r}")


class NotFound(EntityError):
    def __init__(self, what: str = "entity") -> None:
        super().__init__(f"{what} not found")


class PrimaryKeyViolation(EntityError):
    def __init__(self, entity_id: str) -> None:
        self.entity_id = entity_id
        super().__init__(f"primary key violation on id {entity_id!r}")


class UniqueViolation(EntityError):
    def __init__(self, fields: dict[str, object]):
        self.fields = fields
        super().__init__(f"unique violation on {fields!r}")


class ForeignKeyViolation(EntityError):
    def __init__(self, field: str, ref: dict[str, object]):
        self.field = field
        self.ref = ref
        super().__init__(f"foreign key violation on {field}: {ref!r}")


class ForeignKeysUnresolved(EntityError):
    """`{field: {key: value}}` names no entity of `parent` (Kong's `service.name=` references)."""

    def __init__(self, field: str, key: str, value: Any, parent: str) -> None:
        self.field, self.key, self.value, self.parent = field, key, value, parent
        super().__init__(f"foreign key {field}.{key}={value!r} names no {parent} entity")


class ReferencedBy(EntityError):
    """Deleting `parent` (an entity name) that `child` entities still reference."""

    def __init__(self, parent: str, child: str) -> None:
        self.parent, self.child = parent, child
        super().__init__(f"an existing {child} entity references this {parent} entity")


class NodeError(TollwayError):
    """The running node cannot be reached, started or signalled."""
