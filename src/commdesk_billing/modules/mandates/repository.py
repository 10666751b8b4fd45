"""SQL of the mandates module (its tables: `mandates`, `subscription_webhooks`)."""

from __future__ import annotations

import json
import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.db.sql import sql
from commdesk_billing.modules.mandates.model import Mandate

_COLUMNS = ", ".join(Mandate.__dataclass_fields__)


async def insert(conn: AsyncConnection, values: dict[str, Any]) -> None:
    """A new mandate, unless its idempotency key exists already (then nothing)."""
    cols = ", ".join(values)
    params = ", ".join(f":{c}" for c in values)
    await conn.execute(
        sql(f"""
        INSERT INTO mandates ({cols}) VALUES ({params})
        ON CONFLICT (idempotency_key) DO NOTHING"""),
        values,
    )


async def get(
    conn: AsyncConnection, mandate_id: uuid.UUID, *, lock: bool = False
) -> Mandate | None:
    suffix = " FOR UPDATE" if lock else ""
    row = (
        await conn.execute(
            sql(f"SELECT {_COLUMNS} FROM mandates WHERE id = :id{suffix}"), {"id": mandate_id}
        )
    ).first()
    return Mandate.from_row(row) if row else None


async def by_key(conn: AsyncConnection, key: str) -> Mandate | None:
    row = (
        await conn.execute(
            sql(f"SELECT {_COLUMNS} FROM mandates WHERE idempotency_key = :k"), {"k": key}
        )
    ).first()
    return Mandate.from_row(row) if row else None


async def by_subscription(conn: AsyncConnection, subscription_id: str) -> Mandate | None:
    row = (
        await conn.execute(
            sql(f"SELECT {_COLUMNS} FROM mandates WHERE subscription_id = :s"),
            {"s": subscription_id},
        )
    ).first()
    return Mandate.from_row(row) if row else None


async def list_for_user(conn: AsyncConnection, user_id: uuid.UUID, *, limit: int) -> list[Mandate]:
    rows = await conn.execute(
        sql(f"""
        SELECT {_COLUMNS} FROM mandates WHERE user_id = :u
         ORDER BY created_at DESC, id DESC LIMIT :n"""),
        {"u": user_id, "n": limit},
    )
    return [Mandate.from_row(r) for r in rows]


async def update(conn: AsyncConnection, mandate_id: uuid.UUID, **columns: Any) -> None:
    sets = ", ".join(f"{c} = :{c}" for c in sorted(columns))
    await conn.execute(
        sql(f"UPDATE mandates SET {sets}, updated_at = now() WHERE id = :id"),
        {"id": mandate_id, **columns},
    )


async def due_for_refresh(
    conn: AsyncConnection, *, older_than_s: float, limit: int
) -> list[uuid.UUID]:
    """Mandates that may still change at Cashfree and were not asked about lately (also
    member-revoked ones Cashfree still holds live: their CANCEL is sent again); claimed by
    stamping refreshed_at."""
    rows = await conn.execute(
        sql("""
        WITH due AS (
            SELECT id FROM mandates
             WHERE (status IN ('pending', 'active', 'paused', 'failed')
                    OR (status = 'revoked' AND revoked_by = 'member'
                        AND coalesce(cashfree_status, '') NOT IN
                            ('CANCELLED', 'CUSTOMER_CANCELLED', 'COMPLETED', 'EXPIRED',
                             'LINK_EXPIRED', 'CARD_EXPIRED')))
               AND (refreshed_at IS NULL
                    OR refreshed_at < now() - make_interval(secs => :age))
               -- A create whose answer never came and that the member never repeated:
               -- asked about for a day (Cashfree may have made it), then left.
               AND NOT (cashfree_status IS NULL AND created_at < now() - interval '1 day')
             ORDER BY refreshed_at NULLS FIRST
             LIMIT :n
             FOR UPDATE SKIP LOCKED)
        UPDATE mandates m SET refreshed_at = now() FROM due WHERE m.id = due.id
        RETURNING m.id"""),
        {"age": older_than_s, "n": limit},
    )
    return [r[0] for r in rows]


async def store_webhook(conn: AsyncConnection, fields: dict[str, Any]) -> tuple[uuid.UUID, bool]:
    """(its id, whether this delivery made the row); a repeat only counts itself."""
    row = (
        await conn.execute(
            sql("""
            INSERT INTO subscription_webhooks (id, dedupe_key, event_type, subscription_id,
                payment_id, status, raw_body, headers, outcome)
            VALUES (:id, :key, :type, :subscription_id, :payment_id, :status, :raw,
                    CAST(:headers AS jsonb), :outcome)
            ON CONFLICT (dedupe_key) DO UPDATE
               SET repeats = subscription_webhooks.repeats + 1
            RETURNING id, (xmax = 0) AS inserted"""),
            {**fields, "id": uuid.uuid4(), "headers": json.dumps(fields["headers"])},
        )
    ).one()
    return row.id, bool(row.inserted)


async def mark_webhook(conn: AsyncConnection, webhook_id: uuid.UUID, outcome: str) -> None:
    await conn.execute(
        sql("UPDATE subscription_webhooks SET outcome = :o WHERE id = :id"),
        {"id": webhook_id, "o": outcome[:300]},
    )
