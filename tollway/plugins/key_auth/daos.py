"""key-auth's own entity: API keys of consumers (Kong's `keyauth_credentials`).

Served at /consumers/{consumer}/key-auth[/{key}] and /key-auths[/{key}]; a key is generated when
none is given, and a consumer's keys are deleted with it (ON DELETE CASCADE).

A key given a `ttl` (seconds) expires that long after it was written, as Kong's: the Admin API
answers 404 for it from then on and the proxy stops accepting it (workers get `expires_at`).
Expired rows are deleted by the next write of a credential and by a sweep every minute
(services.py), never on a read.

With `keyauth_hash_keys` on (the default) a key is stored as `sha256:<hex>` (see keys.py): the
response that sets or generates a key shows it in full, once; every later read shows the hash,
as Kong shows a basic-auth password. A key in a URL is found by its hash, by the hash itself, or
as a readable key stored before hashing was turned on. With it off, keys are stored readable, as
Kong does. Workers always receive hashes, whatever is stored.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from sqlalchemy import BigInteger, Column, ForeignKey, String, Table, Text

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
    Column("ttl", BigInteger, index=True),  # when it expires, epoch seconds (migration 001)
    Column("tags", Text),
)


def generate_key() -> str:
    """A random key: 32 hex characters from `secrets`, as Kong generates them."""
    return secrets.token_hex(16)


def for_workers(credential: dict[str, Any]) -> dict[str, Any]:
    """What a worker gets: the key's hash, never a readable key, and `expires_at` (epoch
    seconds, or None) for a credential with a ttl, which the handler compares with its clock.
    The ttl read counts whole seconds left: the worker may accept the key up to a second late,
    never early."""
    key = credential.get("key")
    sent = {**credential, "key": stored_form(key)} if isinstance(key, str) else dict(credential)
    ttl = credential.get("ttl")
    sent["expires_at"] = int(time.time()) + ttl if isinstance(ttl, int) else None
    return sent


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
        ttl=True,
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
