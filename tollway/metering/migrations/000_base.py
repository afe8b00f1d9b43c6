"""The ledger: usage aggregates, last known names, and the flusher's spool offsets."""

from __future__ import annotations

from sqlalchemy.engine import Connection

from tollway.metering.tables import LEDGER_TABLES, metadata


def up(conn: Connection) -> None:
    metadata.create_all(conn, tables=LEDGER_TABLES, checkfirst=True)
