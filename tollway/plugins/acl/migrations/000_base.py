"""acl's table: consumers' groups, unique per consumer; a consumer's groups go with it."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, ForeignKey, MetaData, String, Table, Text
from sqlalchemy.engine import Connection


def up(conn: Connection) -> None:
    meta = MetaData()
    Table("consumers", meta, Column("id", String(36), primary_key=True))  # referenced, not created
    acls = Table(
        "acls", meta,
        Column("id", String(36), primary_key=True),
        Column("created_at", BigInteger, nullable=False),
        Column("updated_at", BigInteger, nullable=False),
        Column("consumer_id", String(36), ForeignKey("consumers.id", ondelete="CASCADE"),
               nullable=False, index=True),
        Column("group", String(255), nullable=False),
        # acls:<consumer id>:<group>: one row per consumer and group
        Column("cache_key", Text, nullable=False, unique=True),
        Column("tags", Text),
    )
    acls.create(conn)
