"""Consumers: who calls the APIs, known by username and/or custom_id."""

from __future__ import annotations

from typing import Any

from tollway.store import tables
from tollway.store.entities.schema import EntitySchema, Errors, common_fields


def username_or_custom_id(consumer: dict[str, Any]) -> Errors:
    if consumer.get("username") or consumer.get("custom_id"):
        return {}
    return {"@entity": ["at least one of these fields must be non-empty: 'custom_id', 'username'"]}


CONSUMERS = EntitySchema(
    name="consumers",
    path="consumers",
    table=tables.consumers,
    endpoint_key="username",
    unique=("username", "custom_id"),
    fields={
        **common_fields(),
        "username": {"type": "string"},
        "custom_id": {"type": "string"},
    },
    checks=(username_or_custom_id,),
    documented_checks=({"anyOf": [{"required": [name], "properties": {name: {"type": "string", "minLength": 1}}}
                                  for name in ("username", "custom_id")]},),
)
