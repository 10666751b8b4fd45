"""SQL of the refunds domain."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.db.sql import sql
from commdesk_billing.modules.refunds.allocation import Parts
from commdesk_billing.modules.refunds.model import (
    ALLOWED,
    STANDING,
    Refund,
    RefundStatus,
)
from commdesk_billing.telemetry import aftercommit
from commdesk_billing.telemetry.metrics import (
    REFUND_TRANSITIONS,
    REFUNDS_CREATED,
    REFUNDS_FINISHED,
)

# A refund never leaves these (the finished metric counts each move into one).
_ENDS = frozenset({RefundStatus.SUCCESS, RefundStatus.FAILED, RefundStatus.CANCELLED})
_COLUMNS = ", ".join(Refund.__dataclass_fields__)


async def get(conn: AsyncConnection, refund_id: uuid.UUID, *, lock: bool = False) -> Refund | None:
    # NO KEY UPDATE: processors of one refund still queue on it, but rows that merely
    # reference it (a credit note, a billing event) are not held up behind a Cashfree call.
    suffix = " FOR NO KEY UPDATE" if lock else ""
    row = (
        await conn.execute(
            sql(f"SELECT {_COLUMNS} FROM refunds WHERE id = :id{suffix}"), {"id": refund_id}
        )
    ).first()
    return Refund.from_row(row) if row else None


async def by_ref(conn: AsyncConnection, refund_ref: str) -> Refund | None:
    row = (
        await conn.execute(
            sql(f"SELECT {_COLUMNS} FROM refunds WHERE refund_ref = :r"), {"r": refund_ref}
        )
    ).first()
    return Refund.from_row(row) if row else None


async def by_key(conn: AsyncConnection, idempotency_key: str) -> Refund | None:
    row = (
        await conn.execute(
            sql(f"SELECT {_COLUMNS} FROM refunds WHERE idempotency_key = :k"),
            {"k": idempotency_key},
        )
    ).first()
    return Refund.from_row(row) if row else None


async def for_payment(
    conn: AsyncConnection,
    payment_id: uuid.UUID,
    *,
    limit: int = 1000,
    before: tuple[datetime, uuid.UUID] | None = None,
) -> list[Refund]:
    row_before = before or (None, None)
    rows = (
        await conn.execute(
            sql(f"""
            SELECT {_COLUMNS} FROM refunds
             WHERE payment_id = :p
               AND (CAST(:at AS timestamptz) IS NULL
                    OR (created_at, id) < (CAST(:at AS timestamptz), CAST(:bid AS uuid)))
             ORDER BY created_at DESC, id DESC LIMIT :limit"""),
            {"p": payment_id, "at": row_before[0], "bid": row_before[1], "limit": limit},
        )
    ).all()
    return [Refund.from_row(r) for r in rows]


async def standing_parts(conn: AsyncConnection, payment_id: uuid.UUID) -> Parts:
    """What the payment's standing refunds (requested or done, not failed) add up to."""
    row = (
        await conn.execute(
            sql("""
            SELECT coalesce(sum(amount_paise), 0), coalesce(sum(taxable_paise), 0),
                   coalesce(sum(cgst_paise), 0), coalesce(sum(sgst_paise), 0),
                   coalesce(sum(igst_paise), 0), coalesce(sum(base_credits), 0),
                   coalesce(sum(bonus_credits), 0)
              FROM refunds WHERE payment_id = :p AND status = ANY(:standing)"""),
            {"p": payment_id, "standing": [s.value for s in STANDING]},
        )
    ).one()
    return Parts(*(int(v) for v in row))


async def flag_for_review(conn: AsyncConnection, refund_id: uuid.UUID, reason: str) -> None:
    await conn.execute(
        sql("""
        UPDATE refunds SET review_reason = coalesce(review_reason, :r), updated_at = now()
         WHERE id = :id"""),
        {"id": refund_id, "r": reason},
    )


async def insert(conn: AsyncConnection, values: dict[str, Any]) -> None:
    cols = ", ".join(values)
    params = ", ".join(f":{c}" for c in values)
    await conn.execute(sql(f"INSERT INTO refunds ({cols}) VALUES ({params})"), values)
    aftercommit.count(conn, REFUNDS_CREATED)


_SETTABLE = frozenset(
    {
        "cf_refund_id",
        "refund_arn",
        "gateway_status",
        "status_description",
        "failure_reason",
        "processed_at",
    }
)


async def move(
    conn: AsyncConnection, refund_id: uuid.UUID, to: RefundStatus, *, reason: str, **cols: Any
) -> RefundStatus | None:
    """Conditional status change (see the state machine in model.py); the status it left,
    or None when the refund is elsewhere already."""
    unknown = set(cols) - _SETTABLE
    if unknown:
        raise ValueError(f"a refund move cannot set {sorted(unknown)}")
    sets = "".join(f", {c} = :{c}" for c in sorted(cols))
    row = (
        await conn.execute(
            sql(f"""
            WITH old AS (SELECT status FROM refunds WHERE id = :id FOR NO KEY UPDATE)
            UPDATE refunds r SET status = :to, updated_at = now(){sets}
              FROM old
             WHERE r.id = :id AND old.status = ANY(:allowed)
            RETURNING old.status"""),
            {"id": refund_id, "to": to.value, "allowed": [s.value for s in ALLOWED[to]], **cols},
        )
    ).first()
    if row is None:
        return None
    previous = RefundStatus(row[0])
    if previous is not to:
        await conn.execute(
            sql("""
            INSERT INTO refund_transitions (refund_id, from_status, to_status, reason)
            VALUES (:id, :f, :t, :r)"""),
            {"id": refund_id, "f": previous.value, "t": to.value, "r": reason[:500]},
        )
        aftercommit.count(conn, REFUND_TRANSITIONS.labels(previous.value, to.value))
        if to in _ENDS:
            aftercommit.count(conn, REFUNDS_FINISHED.labels(to.value.lower()))
    return previous


async def note_gateway(conn: AsyncConnection, refund_id: uuid.UUID, **cols: Any) -> None:
    """Record what Cashfree said without a status change (ids, ARN, description)."""
    unknown = set(cols) - _SETTABLE
    if unknown or not cols:
        raise ValueError(f"cannot note {sorted(unknown)}")
    sets = ", ".join(f"{c} = coalesce(:{c}, {c})" for c in sorted(cols))
    await conn.execute(
        sql(f"UPDATE refunds SET {sets}, updated_at = now() WHERE id = :id"),
        {"id": refund_id, **cols},
    )


async def mark_synced(conn: AsyncConnection, refund_id: uuid.UUID) -> None:
    await conn.execute(
        sql("""
        UPDATE refunds SET last_synced_at = now(), sync_count = sync_count + 1
         WHERE id = :id"""),
        {"id": refund_id},
    )


async def due_for_sync(
    conn: AsyncConnection, *, older_than: datetime, limit: int
) -> list[uuid.UUID]:
    rows = (
        await conn.execute(
            sql("""
            SELECT id FROM refunds
             WHERE status IN ('CREATED', 'PENDING', 'ONHOLD') AND review_reason IS NULL
               AND updated_at < :t AND coalesce(last_synced_at, created_at) < :t
             ORDER BY updated_at LIMIT :limit
               FOR NO KEY UPDATE SKIP LOCKED"""),
            {"t": older_than, "limit": limit},
        )
    ).all()
    return [r.id for r in rows]
