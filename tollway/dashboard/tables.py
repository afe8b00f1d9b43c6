"""The dashboard's table: portal tokens, one row per token a consumer's portal may be opened with.

Only a token's SHA-256 is stored: the token itself is shown once, when created. A token is valid
until `expires_at` (epoch seconds) and while its row exists; DELETE removes the row (revocation).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, MetaData, String, Table

metadata = MetaData()

portal_tokens = Table(
    "portal_tokens", metadata,
    Column("id", String(36), primary_key=True),
    Column("consumer_id", String(36), nullable=False, index=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
)
