"""key-auth's credentials table; a consumer's keys go with it."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, ForeignKey, Integer, MetaData, String, Table, Text
from sqlalchemy.engine import Connection


def up(conn: Connection) -> None:
    meta = MetaData()
    Table("consumers", meta, Column("id", String(36), primary_key=True))  # referenced, not created
    credentials = Table(
        "keyauth_credentials", meta,
        Column("id", String(36), primary_key=True),
        Column("created_at", BigInteger, nullable=False),
        Column("updated_at", BigInteger, nullable=False),
        Column("consumer_id", String(36), ForeignKey("consumers.id", ondelete="CASCADE"),
               nullable=False, index=True),
        Column("key", String(255), nullable=False, unique=True),
        Column("ttl", Integer),
        Column("tags", Text),
    )
    credentials.create(conn)
