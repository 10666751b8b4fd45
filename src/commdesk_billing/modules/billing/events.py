"""`billing_events`: an append-only log of billing facts, in the order they happened.

Each fact is written in the transaction that makes it true (an order opened, paid, failed,
credited; a refund requested, done or failed; a document issued), so the log never shows a
fact that was rolled back and never misses one that committed. Analytics reads it; nothing
in billing decides anything from it.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.db.sql import sql


async def record(
    conn: AsyncConnection,
    event_type: str,
    *,
    payment_id: uuid.UUID | None = None,
    refund_id: uuid.UUID | None = None,
    invoice_id: uuid.UUID | None = None,
    user_id: uuid.UUID | None = None,
    amount_paise: int | None = None,
    credits: int | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    await conn.execute(
        sql("""
        INSERT INTO billing_events (event_type, payment_id, refund_id, invoice_id, user_id,
                                    amount_paise, credits, data)
        VALUES (:t, :p, :r, :i, :u, :a, :c, CAST(:d AS jsonb))"""),
        {
            "t": event_type,
            "p": payment_id,
            "r": refund_id,
            "i": invoice_id,
            "u": user_id,
            "a": amount_paise,
            "c": credits,
            "d": json.dumps(data or {}),
        },
    )


async def record_payment(
    conn: AsyncConnection, payment_id: uuid.UUID, event_type: str, data: dict[str, Any]
) -> None:
    """A payment fact, with the payment's own user, amount and credits."""
    await conn.execute(
        sql("""
        INSERT INTO billing_events (event_type, payment_id, user_id, amount_paise, credits,
                                    data)
        SELECT :t, id, user_id, amount_paise, base_credits + bonus_credits,
               CAST(:d AS jsonb)
          FROM payments WHERE id = :p"""),
        {"t": event_type, "p": payment_id, "d": json.dumps(data)},
    )


def payment_fact_from(source: str) -> str:
    """The body of a data-modifying CTE writing one payment fact of type `:fact_type` per row
    of `source` (a CTE of the caller's statement with columns id, user_id, amount_paise,
    credits and data jsonb): `record_payment` inside the statement that makes the fact true,
    so both commit or neither does, in one round trip."""
    return f"""
    INSERT INTO billing_events (event_type, payment_id, user_id, amount_paise, credits, data)
    SELECT CAST(:fact_type AS text), id, user_id, amount_paise, credits, data FROM {source}"""


async def for_payment(conn: AsyncConnection, payment_id: uuid.UUID) -> list[dict[str, Any]]:
    rows = (
        await conn.execute(
            sql("""
            SELECT id, event_type, payment_id, refund_id, invoice_id, user_id, amount_paise,
                   credits, data, occurred_at
              FROM billing_events WHERE payment_id = :p ORDER BY id"""),
            {"p": payment_id},
        )
    ).all()
    return [r._asdict() for r in rows]
