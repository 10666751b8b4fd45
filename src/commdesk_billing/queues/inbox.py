"""Consumer inbox: the message id is recorded in the same transaction as the effect."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.db.sql import sql
from commdesk_billing.queues.envelope import Envelope


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


async def seen(
    conn: AsyncConnection, message_ids: Sequence[uuid.UUID], consumer: str
) -> set[uuid.UUID]:
    """Which of these messages `consumer` has already processed."""
    rows = (
        await conn.execute(
            sql("""
        SELECT message_id FROM inbox
         WHERE consumer = :c AND message_id = ANY(CAST(:ids AS uuid[]))"""),
            {"c": consumer, "ids": list(message_ids)},
        )
    ).all()
    return {r.message_id for r in rows}


async def claim_many(conn: AsyncConnection, envelopes: Sequence[Envelope], consumer: str) -> None:
    """Record a batch's applied messages. A concurrent duplicate that got here first is
    harmless: its effect was the same operation, replayed by key."""
    if not envelopes:
        return
    await conn.execute(
        sql("""
        INSERT INTO inbox (message_id, consumer, message_type)
        SELECT m, :c, t FROM unnest(CAST(:ids AS uuid[]), CAST(:types AS text[])) AS v(m, t)
        ON CONFLICT DO NOTHING"""),
        {"c": consumer, "ids": [e.id for e in envelopes], "types": [e.type for e in envelopes]},
    )
