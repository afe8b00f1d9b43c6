"""Kong's error table and the JSON shapes of Admin API errors.

    ApiError(status, body)        any error answer; raised anywhere below an endpoint
    └── DbError(code, message, fields)   Kong's `{"code", "name", "message", "fields"}` shape

Store errors (tollway.errors) are translated here, at the HTTP boundary.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tollway.errors import (
    ForeignKeysUnresolved,
    ForeignKeyViolation,
    NotFound,
    PrimaryKeyViolation,
    ReferencedBy,
    SchemaViolation,
    StoreUnavailable,
    UniqueViolation,
)

# code: (name, HTTP status), as Kong's kong/db/errors.lua and its Admin API use them.
CODES: dict[int, tuple[str, int]] = {
    1: ("invalid primary key", 400),
    2: ("schema violation", 400),
    3: ("primary key violation", 400),  # Kong's endpoints answer 400 (its legacy helper said 409)
    4: ("foreign key violation", 400),
    5: ("unique constraint violation", 409),
    6: ("not found", 404),
    7: ("invalid offset", 400),
    8: ("database error", 500),
    9: ("invalid size", 400),
    11: ("invalid options", 400),
    13: ("foreign keys unresolved", 400),
}
PRIMARY_KEY_VIOLATION, SCHEMA_VIOLATION, FOREIGN_KEY_VIOLATION, UNIQUE_VIOLATION = 3, 2, 4, 5
INVALID_OFFSET, INVALID_SIZE, INVALID_OPTIONS = 7, 9, 11


class ApiError(Exception):
    """An error answer: HTTP status and JSON body."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body.get("message"))
        self.status = status
        self.body = body


class DbError(ApiError):
    """Kong's database error shape, with the status its code maps to."""

    def __init__(self, code: int, message: str, fields: Any = None) -> None:
        name, status = CODES[code]
        body: dict[str, Any] = {"code": code, "name": name, "message": message}
        if fields is not None:
            body["fields"] = fields
        super().__init__(status, body)


def not_found() -> ApiError:
    return ApiError(404, {"message": "Not found"})


def lua_pretty(value: Any) -> str:
    """A value as Kong prints it in messages (Penlight's pretty.write on one line)."""
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{k}={lua_pretty(v)}" for k, v in sorted(value.items())) + "}"
    if isinstance(value, list | tuple):
        return "{" + ",".join(lua_pretty(v) for v in value) + "}"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return str(value)


def _messages(errors: Mapping[str, Any]) -> list[str]:
    """One line per problem: entity checks first, then fields sorted, one level of nesting spelled."""
    lines = list(errors.get("@entity", []))
    for name in sorted(k for k in errors if k != "@entity"):
        problem = errors[name]
        if isinstance(problem, list):
            problem = {str(i): p for i, p in enumerate(problem, 1) if p is not None}
        if isinstance(problem, Mapping):
            for sub in sorted(problem):
                value = problem[sub]
                text = value if isinstance(value, str) else lua_pretty(value)
                lines.append(f"{name}.{sub}: {text}")
        else:
            lines.append(f"{name}: {problem}")
    return lines


def schema_violation(errors: Mapping[str, Any]) -> DbError:
    """400 code 2; the message lists every problem as Kong does."""
    lines = _messages(errors)
    if len(lines) == 1:
        message = f"schema violation ({lines[0]})"
    else:
        message = f"{len(lines)} schema violations ({'; '.join(lines)})"
    return DbError(SCHEMA_VIOLATION, message, dict(errors))


def unique_violation(fields: Mapping[str, Any]) -> DbError:
    return DbError(UNIQUE_VIOLATION, f"UNIQUE violation detected on '{lua_pretty(fields)}'", dict(fields))


def foreign_key_violation(field: str, ref: Mapping[str, Any], parent: str) -> DbError:
    message = f"the foreign key '{lua_pretty(ref)}' does not reference an existing '{parent}' entity."
    return DbError(FOREIGN_KEY_VIOLATION, message, {field: dict(ref)})


def foreign_keys_unresolved(field: str, key: str, value: Any, parent: str) -> DbError:
    """A reference by endpoint key (`service.name=`) that names no entity."""
    problem = (f"the foreign key cannot be resolved with '{lua_pretty({key: value})}' "
               f"for an existing '{parent}' entity")
    return DbError(13, f"foreign key unresolved ({field}.{key}: {problem})", {field: {key: problem}})


def referenced_by(parent: str, child: str) -> DbError:
    """Deleting an entity that others still reference (a service with routes)."""
    return DbError(FOREIGN_KEY_VIOLATION, f"an existing '{child}' entity references this '{parent}' entity",
                   {"@referenced_by": child})


def primary_key_violation(entity_id: str) -> DbError:
    return DbError(PRIMARY_KEY_VIOLATION, f"primary key violation on key '{lua_pretty({'id': entity_id})}'",
                   {"id": entity_id})


def invalid_options(option: str, problem: str) -> DbError:
    """A bad query option (tags): Kong names it under `options`, not `fields`."""
    error = DbError(INVALID_OPTIONS, f"invalid option ({option}: {problem})")
    error.body["options"] = {option: problem}
    return error


def invalid_size(message: str) -> DbError:
    return DbError(INVALID_SIZE, message)


def invalid_offset(offset: str, reason: str) -> DbError:
    return DbError(INVALID_OFFSET, f"'{offset}' is not a valid offset: {reason}")


def from_store_error(exc: Exception) -> ApiError | None:
    """The Admin API answer for a store error, or None when it is not one we translate."""
    if isinstance(exc, SchemaViolation):
        return schema_violation(exc.fields)
    if isinstance(exc, NotFound):
        return not_found()
    if isinstance(exc, UniqueViolation):
        return unique_violation(exc.fields)
    if isinstance(exc, PrimaryKeyViolation):
        return primary_key_violation(exc.entity_id)
    if isinstance(exc, ForeignKeyViolation):
        # every foreign field names its table in the singular: service -> services
        return foreign_key_violation(exc.field, exc.ref, exc.field + "s")
    if isinstance(exc, ForeignKeysUnresolved):
        return foreign_keys_unresolved(exc.field, exc.key, exc.value, exc.parent)
    if isinstance(exc, ReferencedBy):
        return referenced_by(exc.parent, exc.child)
    if isinstance(exc, StoreUnavailable):
        message = str(exc) if str(exc).startswith("database unavailable") else f"database unavailable: {exc}"
        return ApiError(503, {"message": message})
    return None
