"""acl's own entity: the groups of consumers (Kong's `acls`).

Served at /consumers/{consumer}/acls[/{id or group}] and /acls[/{id}]. A group name is unique per
consumer, not on its own, so it names an ACL only under its consumer; `PUT
/consumers/{c}/acls/{group}` creates that group. A consumer's groups are deleted with it (ON
DELETE CASCADE).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import BigInteger, Column, ForeignKey, String, Table, Text

from tollway.store import tables
from tollway.store.entities.schema import EntitySchema, Nesting, common_fields

acls = Table(
    "acls", tables.metadata,
    Column("id", String(36), primary_key=True),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("consumer_id", String(36), ForeignKey("consumers.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("group", String(255), nullable=False),
    Column("cache_key", Text, nullable=False, unique=True),
    Column("tags", Text),
)


def cache_key(acl: Mapping[str, Any]) -> dict[str, Any]:
    """The column that makes (consumer, group) unique."""
    return {"cache_key": ":".join(["acls", (acl.get("consumer") or {}).get("id") or "", acl.get("group") or ""])}


def unique_key(acl: Mapping[str, Any]) -> dict[str, Any]:
    return {"consumer": acl.get("consumer"), "group": acl.get("group")}


ACLS = EntitySchema(
    name="acls",
    path="acls",
    table=acls,
    endpoint_key="group",
    endpoint_key_scope="consumer",
    nested=(Nesting("consumer", "acls"),),
    fields={
        **common_fields(),
        "consumer": {"type": "foreign", "reference": "consumers", "required": True},
        "group": {"type": "string", "required": True},
    },
    computed=cache_key,
    computed_unique=unique_key,
)
ENTITIES = [ACLS]
