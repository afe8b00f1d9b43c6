"""Portal tokens: a consumer's token (stored hashed) opens its portal until it expires or is deleted.

Spelled out here rather than taken from tables.py: a migration is frozen in time. A consumer's
tokens go with it (ON DELETE CASCADE): a portal of a deleted consumer shows nothing.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, ForeignKey, MetaData, String, Table
from sqlalchemy.engine import Connection


def up(conn: Connection) -> None:
    meta = MetaData()
    Table("consumers", meta, Column("id", String(36), primary_key=True))  # the core's, referenced
    tokens = Table(
        "portal_tokens", meta,
        Column("id", String(36), primary_key=True),
        Column("consumer_id", String(36), ForeignKey("consumers.id", ondelete="CASCADE"), nullable=False,
               index=True),
        Column("token_hash", String(64), nullable=False, unique=True),
        Column("created_at", BigInteger, nullable=False),
        Column("expires_at", BigInteger, nullable=False),
    )
    tokens.create(conn, checkfirst=True)
