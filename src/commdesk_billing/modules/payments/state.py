"""The payment state machine: every status change of a payment goes through `move`.

    CREATED ──order opened──▶ ACTIVE ──success──▶ PAID ──credits granted──▶ CREDITED
       │                       │  ▲
       │                       │  └── retry on the same order (FAILED/USER_DROPPED → ACTIVE)
       │                       ├──attempt failed──▶ FAILED ──┐
       │                       ├──user dropped───▶ USER_DROPPED ─┤──▶ PAID (a later attempt
       │                       │                                  │     on the same order won)
       ▼                       ├──order expired──▶ EXPIRED        └──▶ EXPIRED / CANCELLED
    CANCELLED (Cashfree        └──terminated────▶ CANCELLED
    refused the order)      any open state ──amount/currency mismatch──▶ REVIEW

A move is one conditional UPDATE (`WHERE status = ANY(allowed sources)`): a late, duplicated
or out-of-order event finds the row already past it and changes nothing. PAID and CREDITED
never go back. A success Cashfree reports for an order we had written off as EXPIRED or
CANCELLED (or never saw opened: CREATED, when the answer to our create call was lost) still
moves it to PAID: the buyer's money was taken, so the credits are owed.
"""

from __future__ import annotations

import uuid
from enum import StrEnum
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.db.sql import sql
from commdesk_billing.modules.billing import events as billing_events
from commdesk_billing.modules.payments.labels import failure_reason
from commdesk_billing.queues import outbox
from commdesk_billing.telemetry import aftercommit
from commdesk_billing.telemetry.metrics import PAYMENT_TRANSITIONS, PAYMENTS_FAILED

if TYPE_CHECKING:
    from commdesk_billing.modules.payments.model import Payment


class Status(StrEnum):
    CREATED = "CREATED"
    ACTIVE = "ACTIVE"
    FAILED = "FAILED"
    USER_DROPPED = "USER_DROPPED"
    PAID = "PAID"
    CREDITED = "CREDITED"
    EXPIRED = "EXPIRED"
    CANCELLED = "CANCELLED"
    REVIEW = "REVIEW"


S = Status
# to-status -> the statuses it may be reached from
ALLOWED: dict[Status, frozenset[Status]] = {
    S.ACTIVE: frozenset({S.CREATED, S.FAILED, S.USER_DROPPED}),
    S.FAILED: frozenset({S.ACTIVE, S.FAILED, S.USER_DROPPED}),
    S.USER_DROPPED: frozenset({S.ACTIVE, S.USER_DROPPED}),
    S.PAID: frozenset({S.CREATED, S.ACTIVE, S.FAILED, S.USER_DROPPED, S.EXPIRED, S.CANCELLED}),
    S.CREDITED: frozenset({S.PAID}),
    S.EXPIRED: frozenset({S.CREATED, S.ACTIVE, S.FAILED, S.USER_DROPPED}),
    S.CANCELLED: frozenset({S.CREATED, S.ACTIVE, S.FAILED, S.USER_DROPPED}),
    S.REVIEW: frozenset({S.CREATED, S.ACTIVE, S.FAILED, S.USER_DROPPED, S.EXPIRED, S.CANCELLED}),
}
# Still waiting on the buyer or on Cashfree: the sync job asks about these.
OPEN = frozenset({S.CREATED, S.ACTIVE, S.FAILED, S.USER_DROPPED})
# A payment that did not go through (the failure metric counts each move into one).
FAILED_ENDS = frozenset({S.FAILED, S.USER_DROPPED, S.EXPIRED, S.CANCELLED})
# A new attempt may be made on the same order.
RETRYABLE = frozenset({S.FAILED, S.USER_DROPPED})
# Moves announced as `payment.status_changed`: paid, and each way of ending unpaid.
ANNOUNCED = frozenset({S.PAID, S.FAILED, S.USER_DROPPED, S.EXPIRED, S.CANCELLED})

# Columns a move may set besides status (never amounts or identities).
_SETTABLE = frozenset(
    {
        "payment_session_id",
        "cashfree_order_id",
        "cashfree_payment_id",
        "payment_method",
        "payment_group",
        "failure_code",
        "failure_reason",
        "paid_at",
        "credited_at",
        "credits_granted",
        "webhook_verified",
        "retry_count",
        "order_expires_at",
    }
)


def can_move(current: Status, to: Status) -> bool:
    return current in ALLOWED[to]


async def move(
    conn: AsyncConnection,
    payment_id: uuid.UUID,
    to: Status,
    *,
    reason: str,
    error_reason: str | None = None,
    **columns: Any,
) -> Status | None:
    """Move the payment to `to` if its current status allows it; return the status it left,
    or None when the move did not apply (the row is elsewhere already). `error_reason`:
    Cashfree's `error_details.error_reason` of a failed attempt, for the failure metric only."""
    moved = await _move(conn, payment_id, to, reason, error_reason, columns, whole=False)
    return moved[0] if moved is not None else None


async def move_returning(
    conn: AsyncConnection,
    payment_id: uuid.UUID,
    to: Status,
    *,
    reason: str,
    error_reason: str | None = None,
    **columns: Any,
) -> tuple[Status, Payment] | None:
    """`move`, also answering the payment as the move left it (no second read)."""
    moved = await _move(conn, payment_id, to, reason, error_reason, columns, whole=True)
    if moved is None:
        return None
    from commdesk_billing.modules.payments.model import Payment  # model imports Status

    previous, row = moved
    data = dict(row._mapping)
    del data["previous"]
    data["status"] = Status(data["status"])
    return previous, Payment(**data)


@lru_cache(maxsize=256)
def _move_sql(columns: frozenset[str], whole: bool) -> str:
    """One statement: the conditional UPDATE, and only if it changed the status, the
    transition and the billing fact. RETURNING sees only the new row, so the old status is
    read in a CTE; FOR UPDATE makes that read wait for, and then see, any concurrent move of
    the same payment."""
    from commdesk_billing.modules.payments.model import Payment  # model imports Status

    sets = "".join(f", {c} = :{c}" for c in sorted(columns))
    answer = f"previous, {', '.join(Payment.__dataclass_fields__)}" if whole else "previous"
    return f"""
    WITH old AS (SELECT status FROM payments WHERE id = :id FOR UPDATE),
    moved AS (
        UPDATE payments p SET status = :to, updated_at = now(){sets}
          FROM old
         WHERE p.id = :id AND old.status = ANY(:allowed)
        RETURNING old.status AS previous, p.*),
    changed AS (
        SELECT id, user_id, amount_paise, base_credits + bonus_credits AS credits, previous,
               jsonb_build_object('from', previous, 'reason', CAST(:fact_reason AS text))
                   AS data
          FROM moved WHERE previous <> :to),
    transition AS (
        INSERT INTO payment_transitions (payment_id, from_status, to_status, reason)
        SELECT id, previous, :to, :reason FROM changed),
    fact AS ({billing_events.payment_fact_from("changed")})
    SELECT {answer} FROM moved"""


async def _move(
    conn: AsyncConnection,
    payment_id: uuid.UUID,
    to: Status,
    reason: str,
    error_reason: str | None,
    columns: dict[str, Any],
    *,
    whole: bool,
) -> tuple[Status, Any] | None:
    unknown = set(columns) - _SETTABLE
    if unknown:
        raise ValueError(f"a status move cannot set {sorted(unknown)}")
    row = (
        await conn.execute(
            sql(_move_sql(frozenset(columns), whole)),
            {
                "id": payment_id,
                "to": to.value,
                "allowed": [s.value for s in ALLOWED[to]],
                "reason": reason[:500],
                "fact_reason": reason[:200],
                "fact_type": f"payment.{to.value.lower()}",
                **columns,
            },
        )
    ).first()
    if row is None:
        return None
    previous = Status(row[0])
    if previous is not to:
        aftercommit.count(conn, PAYMENT_TRANSITIONS.labels(previous.value, to.value))
        if to in FAILED_ENDS:
            why = failure_reason(
                to,
                error_reason=error_reason,
                error_code=columns.get("failure_code"),
                description=columns.get("failure_reason"),
            )
            aftercommit.count(conn, PAYMENTS_FAILED.labels(why))
        if to in ANNOUNCED:
            # For whoever consumes it (events out: `payment.paid` / `payment.failed`).
            await outbox.announce(
                conn,
                "payment.status_changed",
                {"payment_id": str(payment_id), "status": to.value, "from": previous.value},
                correlation_id=str(payment_id),
            )
    return previous, row
