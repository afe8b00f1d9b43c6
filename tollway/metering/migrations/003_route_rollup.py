"""The rollup without the consumer (billable_usage_routes), rebuilt from the ledger's rows.

The flusher writes the rollup from now on, in the same transaction as the ledger; this rebuilds
every rollup row as the sum of the ledger's rows of its key over consumers, so it is exact and may
run again. Run it, as every migration, before the nodes of the new version start flushing.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.engine import Connection

from tollway.metering.tables import ROLLUP_FROM_LEDGER, rollup


def up(conn: Connection) -> None:
    rollup.create(conn, checkfirst=True)
    conn.execute(text("DELETE FROM billable_usage_routes"))
    conn.execute(text(ROLLUP_FROM_LEDGER))
