"""key-auth's own entity: API keys of consumers (Kong's `keyauth_credentials`).

Served at /consumers/{consumer}/key-auth[/{key}] and /key-auths[/{key}]; a key is generated when
none is given, and a consumer's keys are deleted with it (ON DELETE CASCADE).
"""

from __future__ import annotations

import secrets

from sqlalchemy import BigInteger, Column, ForeignKey, Integer, String, Table, Text

from tollway.admin.schema import EntitySchema, Nesting, common_fields
from tollway.store import tables

keyauth_credentials = Table(
    "keyauth_credentials", tables.metadata,
    Column("id", String(36), primary_key=True),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("consumer_id", String(36), ForeignKey("consumers.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("key", String(255), nullable=False, unique=True),
    Column("ttl", Integer),
    Column("tags", Text),
)


def generate_key() -> str:
    """A random key: 32 hex characters from `secrets`, as Kong generates them."""
    return secrets.token_hex(16)


KEYAUTH_CREDENTIALS = EntitySchema(
    name="keyauth_credentials",
    path="key-auths",
    table=keyauth_credentials,
    endpoint_key="key",
    unique=("key",),
    nested=(Nesting("consumer", "key-auth"),),
    fields={
        **common_fields(),
        "consumer": {"type": "foreign", "reference": "consumers", "required": True},
        "key": {"type": "string"},
        "ttl": {"type": "integer", "between": (0, 100000000)},
    },
    generated={"key": generate_key},
)

ENTITIES = [KEYAUTH_CREDENTIALS]
