"""A credential's `ttl` column holds when it expires (epoch seconds), as Kong's does.

Before, it held the ttl given, in seconds, and nothing expired: such a credential now expires
that long after it was created (a ttl of 0 never does). The column becomes 64-bit, and indexed
for the reads that skip expired rows and the purge that deletes them.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.engine import Connection


def up(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(text("ALTER TABLE keyauth_credentials ALTER COLUMN ttl TYPE BIGINT"))
    conn.execute(text("UPDATE keyauth_credentials SET ttl = NULL WHERE ttl <= 0"))
    conn.execute(text("UPDATE keyauth_credentials SET ttl = created_at + ttl WHERE ttl IS NOT NULL"))
    conn.execute(text("CREATE INDEX ix_keyauth_credentials_ttl ON keyauth_credentials (ttl)"))
