"""Entity schemas: plain data that drives the generic CRUD of the Admin API.

Fields use the same format as a plugin's `config` fields (tollway/plugins/<name>/schema.py):
`{"type": ..., "default": ..., "required": bool, ...}`, with these types:

  string, boolean, integer, number           scalars (`one_of`, `between`, `gt`, `starts_with`, `len_min`,
                                             `header_name`: letters, digits, '_' and '-' only)
  array, set                                 lists, each checked against `elements`
  map                                        string keys, values checked against `values`
  record                                     nested `fields`
  foreign                                    `{"id": uuid}` of an entity of `reference` (a table name)

Any field may carry `documented`: JSON Schema keywords for the OpenAPI document that say what a
check (not the field's type) enforces, such as a price's pattern or a currency's codes.

An entity adds what the store needs: its table, unique fields, the field its endpoints accept
besides the id (name, username, key) and hooks for what plain data cannot say.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table

Fields = Mapping[str, Mapping[str, Any]]
Errors = dict[str, Any]

JSON_TYPES = frozenset({"array", "set", "map", "record"})


@dataclass(frozen=True)
class Nesting:
    """The entity is also served under its parent: /{parent path}/{parent}/{segment}."""

    field: str      # the foreign field pointing at the parent, e.g. "service"
    segment: str    # the path segment under the parent, e.g. "routes" or "key-auth"


@dataclass(frozen=True)
class EntitySchema:
    """One Admin API entity and its table."""

    name: str                     # the table name and Kong's entity name, e.g. "keyauth_credentials"
    path: str                     # the collection path segment, e.g. "key-auths"
    table: Table
    fields: Fields
    endpoint_key: str | None = None          # besides the id, {x} in a path may be this field
    # The foreign field under which the endpoint key is unique, when it is not unique on its own
    # (an ACL's group, per consumer): the key then finds entities only under a parent.
    endpoint_key_scope: str | None = None
    unique: tuple[str, ...] = ()             # fields unique on their own
    nested: tuple[Nesting, ...] = ()
    # Run once the fields are valid; each returns errors (Kong's "@entity" list for whole-entity ones).
    checks: tuple[Callable[[dict[str, Any]], Errors], ...] = ()
    # What `checks` (and `prepare`) ask of a body written whole (POST, PUT), as JSON Schema keywords
    # (anyOf, not) for the OpenAPI document, so that it refuses what they refuse.
    documented_checks: tuple[Mapping[str, Any], ...] = ()
    # Before validation: rewrite shorthands (a service's url) on the incoming data.
    prepare: Callable[[dict[str, Any]], Errors] | None = None
    # The fields for this data, when they depend on it (a plugin's config follows its name).
    fields_for: Callable[[Mapping[str, Any]], tuple[Fields, Errors]] | None = None
    # Extra columns computed from the entity (a plugin's cache_key).
    computed: Callable[[Mapping[str, Any]], dict[str, Any]] | None = None
    # The unique key a computed column stands for, reported on a violation.
    computed_unique: Callable[[Mapping[str, Any]], dict[str, Any]] | None = None
    # Entities that must be gone before this one may be deleted: (child table, foreign column).
    restrict: tuple[tuple[str, str], ...] = ()
    # Generate a value for a field when none is given (a credential's key).
    generated: Mapping[str, Callable[[], Any]] = field(default_factory=dict)
    # How a field's value is stored, when not as given (a key-auth key, hashed).
    stored: Mapping[str, Callable[[Any], Any]] = field(default_factory=dict)
    # The stored values a given value may match, for lookups by endpoint key and uniqueness
    # (a key matches its hash and, from before hashing was on, itself).
    aliases: Mapping[str, Callable[[str], list[str]]] = field(default_factory=dict)
    # The entity as sent to proxy workers, when it differs from what the Admin API shows.
    for_workers: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    # Fields whose values are secrets: never logged, documented as such.
    secrets: tuple[str, ...] = ()
    # Whether proxy workers get this entity in their configuration snapshot.
    in_snapshot: bool = True
    # Whether Kong's declarative files (tollway config) carry it: billing's entities, whose
    # subscriptions have a timeline of plan versions, are declared by `tollway plans apply` instead.
    declarative: bool = True
    # Kong's `ttl = true`: a `ttl` (seconds) given on write makes the entity expire that long
    # after; its `ttl` column holds when (epoch seconds), reads show the seconds left, and an
    # expired entity is never read (the Dao filters it, writes purge it).
    ttl: bool = False

    def resolve_fields(self, data: Mapping[str, Any]) -> tuple[Fields, Errors]:
        """The fields that apply to `data`, and errors found while choosing them."""
        if self.fields_for is None:
            return self.fields, {}
        return self.fields_for(data)

    def public(self, entity: Mapping[str, Any]) -> dict[str, Any]:
        """The entity as the Admin API shows it: values of fields marked `"secret": True` (a plugin
        config's password) replaced by REDACTED."""
        fields, _ = self.resolve_fields(entity)
        return redact(fields, entity)

    def foreign_fields(self) -> dict[str, str]:
        """Foreign field name -> referenced table."""
        return {name: spec["reference"] for name, spec in self.fields.items() if spec["type"] == "foreign"}


REDACTED = "[redacted]"  # a secret field's value as shown; sent back in a PATCH, it keeps the stored value


def redact(fields: Fields, record: Mapping[str, Any]) -> dict[str, Any]:
    """`record` with the values of its secret fields (records' fields included) replaced by REDACTED."""
    shown = dict(record)
    for name, spec in fields.items():
        value = shown.get(name)
        if value is None:
            continue
        if spec.get("secret"):
            shown[name] = REDACTED
        elif spec["type"] == "record" and isinstance(value, Mapping):
            shown[name] = redact(spec.get("fields", {}), value)
    return shown


def column_of(name: str, spec: Mapping[str, Any]) -> str:
    """The column that stores a field: `service` is stored as `service_id`."""
    return name + "_id" if spec["type"] == "foreign" else name


# Fields every entity shares.
ID = {"type": "string", "uuid": True, "auto": True}
TIMESTAMP = {"type": "integer", "timestamp": True, "auto": True}
TAGS = {"type": "set", "elements": {"type": "string", "tag": True}}


def common_fields() -> dict[str, dict[str, Any]]:
    """id, created_at, updated_at and tags, in that order."""
    return {"id": dict(ID), "created_at": dict(TIMESTAMP), "updated_at": dict(TIMESTAMP), "tags": dict(TAGS)}
