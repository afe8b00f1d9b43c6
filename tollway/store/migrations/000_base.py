"""The core schema: services, routes, consumers, plugins and the configuration version.

The tables are spelled out here rather than taken from tables.py: a migration is frozen in time,
and later changes to tables.py arrive as new migrations.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, ForeignKey, Integer, MetaData, String, Table, Text
from sqlalchemy.engine import Connection


def _base(meta: MetaData, name: str, *columns: Column) -> Table:  # type: ignore[type-arg]
    return Table(name, meta, Column("id", String(36), primary_key=True),
                 Column("created_at", BigInteger, nullable=False),
                 Column("updated_at", BigInteger, nullable=False),
                 *columns, Column("tags", Text))


def up(conn: Connection) -> None:
    meta = MetaData()
    _base(meta, "services",
          Column("name", String(255), unique=True),
          Column("protocol", String(32), nullable=False),
          Column("host", String(255), nullable=False),
          Column("port", Integer, nullable=False),
          Column("path", Text),
          Column("retries", Integer, nullable=False),
          Column("connect_timeout", Integer, nullable=False),
          Column("write_timeout", Integer, nullable=False),
          Column("read_timeout", Integer, nullable=False),
          Column("enabled", Boolean, nullable=False),
          Column("tls_verify", Boolean))
    _base(meta, "routes",
          Column("name", String(255), unique=True),
          Column("service_id", String(36), ForeignKey("services.id"), index=True),
          Column("protocols", Text, nullable=False),
          Column("methods", Text),
          Column("hosts", Text),
          Column("paths", Text),
          Column("headers", Text),
          Column("snis", Text),
          Column("https_redirect_status_code", Integer, nullable=False),
          Column("regex_priority", Integer, nullable=False),
          Column("strip_path", Boolean, nullable=False),
          Column("path_handling", String(8), nullable=False),
          Column("preserve_host", Boolean, nullable=False),
          Column("request_buffering", Boolean, nullable=False),
          Column("response_buffering", Boolean, nullable=False))
    _base(meta, "consumers",
          Column("username", String(255), unique=True),
          Column("custom_id", String(255), unique=True))
    _base(meta, "plugins",
          Column("name", String(255), nullable=False, index=True),
          Column("service_id", String(36), ForeignKey("services.id", ondelete="CASCADE"), index=True),
          Column("route_id", String(36), ForeignKey("routes.id", ondelete="CASCADE"), index=True),
          Column("consumer_id", String(36), ForeignKey("consumers.id", ondelete="CASCADE"), index=True),
          Column("cache_key", String(255), nullable=False, unique=True),
          Column("config", Text, nullable=False),
          Column("protocols", Text, nullable=False),
          Column("enabled", Boolean, nullable=False))
    version = Table("config_version", meta,
                    Column("id", Integer, primary_key=True),
                    Column("version", BigInteger, nullable=False))
    meta.create_all(conn)
    conn.execute(version.insert().values(id=1, version=1))
