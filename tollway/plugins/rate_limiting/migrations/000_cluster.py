"""The cluster policy's counters: one row per (plugin, period, identity, window end), shared by
every node on the database (cluster_service.py); rows of ended windows are deleted by the nodes."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, MetaData, String, Table, Text
from sqlalchemy.engine import Connection


def up(conn: Connection) -> None:
    meta = MetaData()
    counters = Table(
        "ratelimiting_cluster", meta,
        Column("scope", String(64), primary_key=True),       # the plugin's id
        Column("period", String(8), primary_key=True),       # second ... year
        Column("identity", Text, primary_key=True),          # what the call counts for (limit_by)
        Column("window_end", BigInteger, primary_key=True),  # epoch seconds
        Column("used", BigInteger, nullable=False),          # calls admitted in the window, every node's
    )
    Index("ratelimiting_cluster_window_end", counters.c.window_end)
    counters.create(conn)
