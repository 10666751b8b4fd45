"""Consumer inbox: the message id is recorded in the same transaction as the effect."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.db.sql import sql


async def claim(
    conn: AsyncConnection, message_id: uuid.UUID, consumer: str, message_type: str
) -> bool:
    """True the first time `consumer` sees `message_id`. A concurrent duplicate waits on the
    primary key until the first transaction ends, then sees its row (or takes over if it
    rolled back)."""
    row = (
        await conn.execute(
            sql("""
        INSERT INTO inbox (message_id, consumer, message_type) VALUES (:id, :c, :t)
        ON CONFLICT DO NOTHING RETURNING 1"""),
            {"id": message_id, "c": consumer, "t": message_type},
        )
    ).first()
    return row is not None
