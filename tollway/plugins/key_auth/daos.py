"""key-auth's own entity: API keys of consumers (Kong's `keyauth_credentials`).

Served at /consumers/{consumer}/key-auth[/{key}] and /key-auths[/{key}]; a key is generated when
none is given, and a consumer's keys are deleted with it (ON DELETE CASCADE).

With `keyauth_hash_keys` on (the default) a key is stored as `sha256:<hex>` (see keys.py): the
response that sets or generates a key shows it in full, once; every later read shows the hash,
as Kong shows a basic-auth password. A key in a URL is found by its hash, by the hash itself, or
as a readable key stored before hashing was turned on. With it off, keys are stored readable, as
Kong does. Workers always receive hashes, whatever is stored.
"""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import BigInteger, Column, ForeignKey, Integer, String, Table, Text

from tollway.config import Settings
from tollway.plugins.key_auth.keys import lookup_forms, stored_form
from tollway.store import tables
from tollway.store.entities.schema import EntitySchema, Nesting, common_fields

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


def for_workers(credential: dict[str, Any]) -> dict[str, Any]:
    """What a worker gets: the key's hash, never a readable key."""
    key = credential.get("key")
    return {**credential, "key": stored_form(key)} if isinstance(key, str) else credential


def keyauth_entity(hash_keys: bool) -> EntitySchema:
    return EntitySchema(
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
        stored={"key": stored_form} if hash_keys else {},
        aliases={"key": lookup_forms},
        for_workers=for_workers,
        secrets=("key",),
    )


KEYAUTH_CREDENTIALS = keyauth_entity(hash_keys=True)
ENTITIES = [KEYAUTH_CREDENTIALS]


def entities(settings: Settings) -> list[EntitySchema]:
    """key-auth's entities for these settings (keys hashed at rest unless keyauth_hash_keys is off)."""
    return [KEYAUTH_CREDENTIALS if settings.keyauth_hash_keys else keyauth_entity(hash_keys=False)]
