"""Portal tokens: create one for a consumer, list and delete them, find whose a token is.

A token is `tlwp_` and 43 characters of `secrets.token_urlsafe(32)`; only its SHA-256 is kept
(tables.py), so a database dump opens no portal. A token names a consumer while its row exists and
`expires_at` is in the future; anything else (a guess, a revoked or expired token) names nobody.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from tollway.dashboard.tables import portal_tokens

PREFIX = "tlwp_"
DEFAULT_TTL = 30 * 86400      # a month
MAX_TTL = 366 * 86400         # a year at most: a portal link is not a credential for life


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _shown(row: Any) -> dict[str, Any]:
    return {"id": row.id, "consumer": {"id": row.consumer_id}, "created_at": row.created_at,
            "expires_at": row.expires_at}


async def create(conn: AsyncConnection, consumer_id: str, ttl: int, now: int) -> tuple[str, dict[str, Any]]:
    """A new token for the consumer, valid `ttl` seconds from `now`: the token (shown once) and its row."""
    token = PREFIX + secrets.token_urlsafe(32)
    row = {"id": str(uuid.uuid4()), "consumer_id": consumer_id, "token_hash": token_hash(token),
           "created_at": now, "expires_at": now + ttl}
    await conn.execute(insert(portal_tokens).values(**row))
    return token, {"id": row["id"], "consumer": {"id": consumer_id}, "created_at": now, "expires_at": now + ttl}


async def of_consumer(conn: AsyncConnection, consumer_id: str) -> list[dict[str, Any]]:
    """The consumer's tokens (never the tokens themselves), oldest first."""
    rows = await conn.execute(select(portal_tokens).where(portal_tokens.c.consumer_id == consumer_id)
                              .order_by(portal_tokens.c.created_at, portal_tokens.c.id))
    return [_shown(row) for row in rows]


async def revoke(conn: AsyncConnection, consumer_id: str, token_id: str) -> bool:
    """Delete one of the consumer's tokens; False when it has none with that id."""
    result = await conn.execute(delete(portal_tokens).where(portal_tokens.c.consumer_id == consumer_id,
                                                            portal_tokens.c.id == token_id))
    return bool(result.rowcount)


async def consumer_of(conn: AsyncConnection, token: str, now: int) -> str | None:
    """The id of the consumer whose live token this is, or None."""
    if not token.startswith(PREFIX) or len(token) > 128:
        return None
    found = (await conn.execute(select(portal_tokens.c.consumer_id, portal_tokens.c.expires_at)
                                .where(portal_tokens.c.token_hash == token_hash(token)))).first()
    if found is None or found.expires_at <= now:
        return None
    return str(found.consumer_id)
