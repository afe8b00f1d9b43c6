"""Constraint errors of SQLite and PostgreSQL, read into one shape.

The Admin API checks uniqueness and foreign keys before it writes; a constraint that fires all
the same (a check missed, another node wrote first) is classified here so that it is answered
409 or 400 like the checks' own errors, never 500.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import exc

# PostgreSQL SQLSTATEs: 23505 unique_violation, 23503 foreign_key_violation, 23502 not_null_violation
_UNIQUE, _FOREIGN, _NOT_NULL = "23505", "23503", "23502"
_SQLITE_UNIQUE = re.compile(r"UNIQUE constraint failed: ([\w.]+(?:, [\w.]+)*)")
_SQLITE_NOT_NULL = re.compile(r"NOT NULL constraint failed: [\w]+\.(\w+)")


@dataclass(frozen=True)
class Constraint:
    kind: str                  # "unique", "primary key", "foreign key", "not null" or "other"
    columns: tuple[str, ...]   # the columns involved, when the database says


def _sqlstate(err: exc.DBAPIError) -> str | None:
    for candidate in (err.orig, getattr(err.orig, "__cause__", None)):
        state = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if isinstance(state, str):
            return state
    return None


def _pg_columns(err: exc.DBAPIError, table: str) -> tuple[str, ...]:
    cause = getattr(err.orig, "__cause__", None)
    column = getattr(cause, "column_name", None)
    if column:
        return (column,)
    name = getattr(cause, "constraint_name", None) or ""
    if name.endswith("_pkey"):
        return ("id",)
    if name.startswith(table + "_") and name.endswith("_key"):
        return (name[len(table) + 1:-len("_key")],)
    return ()


def classify(err: exc.IntegrityError, table: str) -> Constraint:
    """What kind of constraint an IntegrityError on `table` broke."""
    state = _sqlstate(err)
    text = str(err.orig)
    if state == _FOREIGN or "FOREIGN KEY constraint failed" in text:
        return Constraint("foreign key", ())
    if state == _NOT_NULL:
        column = getattr(getattr(err.orig, "__cause__", None), "column_name", None)
        return Constraint("not null", (column,) if column else ())
    not_null = _SQLITE_NOT_NULL.search(text)
    if not_null is not None:
        return Constraint("not null", (not_null.group(1),))
    if state == _UNIQUE:
        columns = _pg_columns(err, table)
    else:
        found = _SQLITE_UNIQUE.search(text)
        if found is None:
            return Constraint("other", ())
        columns = tuple(part.split(".")[-1] for part in found.group(1).split(", "))
    return Constraint("primary key" if columns == ("id",) else "unique", columns)
