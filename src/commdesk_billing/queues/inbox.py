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


async def claim_many(
    conn: AsyncConnection, envelopes: Sequence[Envelope], consumer: str
) -> set[uuid.UUID]:
    """Claim a batch: the ids this transaction recorded first. Like `claim`, it waits on a
    concurrent transaction holding the same message and sees its outcome."""
    if not envelopes:
        return set()
    rows = (
        await conn.execute(
            sql("""
        INSERT INTO inbox (message_id, consumer, message_type)
        SELECT m, :c, t FROM unnest(CAST(:ids AS uuid[]), CAST(:types AS text[])) AS v(m, t)
        ON CONFLICT DO NOTHING
        RETURNING message_id"""),
            {"c": consumer, "ids": [e.id for e in envelopes], "types": [e.type for e in envelopes]},
        )
    ).all()
    return {r.message_id for r in rows}


async def unclaim(conn: AsyncConnection, message_ids: Sequence[uuid.UUID], consumer: str) -> None:
    """Drop claims made in this transaction for messages that were refused, not applied."""
    await conn.execute(
        sql("""
        DELETE FROM inbox WHERE consumer = :c AND message_id = ANY(CAST(:ids AS uuid[]))"""),
        {"c": consumer, "ids": list(message_ids)},
    )
