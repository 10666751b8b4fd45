"""The moves of a payment that carry more than the move itself, one place each for every
path that makes them (opening an order, raising a mandate charge, applying what Cashfree
says about either): held for review with the fraud record, cancelled after Cashfree refused
the request, paid with the credit announced in the same transaction."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.modules.fraud import service as fraud
from commdesk_billing.modules.payments import labels
from commdesk_billing.modules.payments import repository as repo
from commdesk_billing.modules.payments.model import Payment
from commdesk_billing.modules.payments.state import Status, move, move_returning
from commdesk_billing.queues import outbox
from commdesk_billing.telemetry import aftercommit
from commdesk_billing.telemetry.metrics import PAYMENTS_SUCCEEDED


async def hold_for_review(
    conn: AsyncConnection, p: Payment, kind: str, *, details: dict[str, Any], reason: str
) -> None:
    """What Cashfree holds differs from our payment: the fact is recorded for review and the
    payment parked in REVIEW (nothing is credited or failed on it until a person looks)."""
    await fraud.record(
        conn, kind, severity="high", payment_id=p.id, user_id=p.user_id, details=details
    )
    await move(conn, p.id, Status.REVIEW, reason=reason)


async def cancel_refused(
    conn: AsyncConnection,
    payment_id: uuid.UUID,
    *,
    reason: str,
    failure_code: str,
    failure_reason: str,
) -> None:
    """Cashfree refused the request itself (a 400) and holds nothing under our id: what we
    asked for will never exist. Only a row nobody has seen at Cashfree yet (CREATED) is
    cancelled: a concurrent call or the sync may have moved it on."""
    current = await repo.get(conn, payment_id, lock=True)
    if current is not None and current.status is Status.CREATED:
        await move(
            conn,
            payment_id,
            Status.CANCELLED,
            reason=reason,
            failure_code=failure_code,
            failure_reason=failure_reason,
        )


async def mark_paid(
    conn: AsyncConnection,
    p: Payment,
    *,
    reason: str,
    source: str,
    cashfree_payment_id: str | None,
    payment_method: str | None,
    payment_group: str | None,
    paid_at: datetime,
) -> Payment | None:
    """Move the payment to PAID and announce its credit (`wallet.credit`) in this
    transaction. None: the move did not apply (the row is elsewhere already)."""
    moved = await move_returning(
        conn,
        p.id,
        Status.PAID,
        reason=reason,
        cashfree_payment_id=cashfree_payment_id,
        payment_method=payment_method,
        payment_group=payment_group,
        paid_at=paid_at,
        webhook_verified=source == "webhook",
        failure_code=None,
        failure_reason=None,
    )
    if moved is None:
        return None
    paid = moved[1]
    aftercommit.count(
        conn, PAYMENTS_SUCCEEDED.labels(labels.channel(paid.metadata, paid.on_mandate), paid.kind)
    )
    await announce_credit(conn, paid)
    return paid


async def heal_credit(conn: AsyncConnection, p: Payment, source: str) -> None:
    """A payment already PAID, looked at again by the sync or by hand: crediting was
    announced with the move to PAID; announcing again is harmless (credit_payment is
    idempotent) and heals a dead-lettered credit message."""
    if p.status is Status.PAID and source in ("sync", "manual"):
        await announce_credit(conn, p)


async def announce_credit(conn: AsyncConnection, p: Payment) -> None:
    await outbox.send(
        conn,
        "wallet.credit",
        "payment.paid",
        {"payment_id": str(p.id)},
        correlation_id=str(p.id),
    )
