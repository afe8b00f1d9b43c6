"""Latency histograms per service, route and grain, beside the usage rows (from now on)."""

from __future__ import annotations

from sqlalchemy.engine import Connection

from tollway.metering.tables import latency


def up(conn: Connection) -> None:
    latency.create(conn, checkfirst=True)
