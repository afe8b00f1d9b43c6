"""The core tables as SQLAlchemy Core objects, for queries (migrations create them, see migrations/).

Arrays, sets, maps and records are JSON text, booleans are BOOLEAN, times are integer epoch
seconds and ids are UUID strings, so the same statements run on SQLite and PostgreSQL.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, ForeignKey, Integer, MetaData, String, Table, Text

metadata = MetaData()

ID = 36  # a UUID as text


def _id() -> Column[str]:
    return Column("id", String(ID), primary_key=True)


def _times() -> list[Column[int]]:
    return [Column("created_at", BigInteger, nullable=False), Column("updated_at", BigInteger, nullable=False)]


services = Table(
    "services", metadata, _id(), *_times(),
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
    Column("tls_verify", Boolean),
    Column("tags", Text),
)

routes = Table(
    "routes", metadata, _id(), *_times(),
    Column("name", String(255), unique=True),
    Column("service_id", String(ID), ForeignKey("services.id"), index=True),
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
    Column("response_buffering", Boolean, nullable=False),
    Column("tags", Text),
)

consumers = Table(
    "consumers", metadata, _id(), *_times(),
    Column("username", String(255), unique=True),
    Column("custom_id", String(255), unique=True),
    Column("tags", Text),
)

plugins = Table(
    "plugins", metadata, _id(), *_times(),
    Column("name", String(255), nullable=False, index=True),
    Column("service_id", String(ID), ForeignKey("services.id", ondelete="CASCADE"), index=True),
    Column("route_id", String(ID), ForeignKey("routes.id", ondelete="CASCADE"), index=True),
    Column("consumer_id", String(ID), ForeignKey("consumers.id", ondelete="CASCADE"), index=True),
    # name:service:route:consumer with '' for a missing scope: unique without NULL surprises.
    Column("cache_key", String(255), nullable=False, unique=True),
    Column("config", Text, nullable=False),
    Column("protocols", Text, nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("tags", Text),
)

schema_meta = Table(
    "schema_meta", metadata,
    Column("subsystem", String(64), primary_key=True),
    Column("name", String(255), primary_key=True),
    Column("executed_at", BigInteger, nullable=False),
)

config_version = Table(
    "config_version", metadata,
    Column("id", Integer, primary_key=True),
    Column("version", BigInteger, nullable=False),
)
