"""How key-auth keys are stored: `sha256:<hex>` of the key, or the key itself (readable, as Kong).

Shared by the Admin API (which stores them) and the proxy handler (which looks them up), so it
imports nothing but hashlib: a worker never loads the store.
"""

from __future__ import annotations

import hashlib
import re

PREFIX = "sha256:"
_HASHED = re.compile(r"^sha256:[0-9a-f]{64}$")


def hash_key(key: str) -> str:
    """The stored form of a key: `sha256:` and the hex SHA-256 of its UTF-8 bytes."""
    return PREFIX + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def is_hashed(value: str) -> bool:
    """Whether a stored value is already a hash (a key given in that form is stored as is)."""
    return len(value) == 71 and _HASHED.match(value) is not None


def stored_form(key: str) -> str:
    """A key as it is stored with hashing on."""
    return key if is_hashed(key) else hash_key(key)


def lookup_forms(value: str) -> list[str]:
    """The stored values a key (or a hash of one) given by a client may match: its hash, and the
    readable key as stored before hashing was turned on."""
    return [value] if is_hashed(value) else [hash_key(value), value]
