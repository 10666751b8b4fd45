"""The steps the kinds of refund request share (a credit purchase's, an INR period's, a
sponsorship's): the amount asked for, checked against what is refundable; the refund row's
common columns; then the audit entry, the `refund.requested` billing event and the
`refund.processing` message, all in the caller's transaction and under the locks it
already holds."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.errors import RefundExceedsRefundable
from commdesk_billing.modules.audit import service as audit
from commdesk_billing.modules.billing import events as billing_events
from commdesk_billing.modules.payments.model import Payment
from commdesk_billing.modules.refunds import repository as repo
from commdesk_billing.modules.refunds.allocation import Parts
from commdesk_billing.modules.refunds.model import Refund
from commdesk_billing.modules.refunds.schemas import RefundRequest
from commdesk_billing.queues import outbox
from commdesk_billing.security.jwt import Principal


def refund_ref(refund_id: uuid.UUID) -> str:
    return f"rf_{refund_id.hex}"


def row(
    refund_id: uuid.UUID,
    caller: Principal,
    payment: Payment,
    body: RefundRequest,
    operation_key: str,
) -> dict[str, Any]:
    """The refund row's columns every kind shares (who asked, for which payment, under which
    key); the caller adds its figures, lots and hold after them."""
    return {
        "id": refund_id,
        "refund_ref": refund_ref(refund_id),
        "payment_id": payment.id,
        "wallet_id": payment.wallet_id,
        "order_id": payment.order_id,
        "idempotency_key": operation_key,
        "requested_by": caller.sub,
        "requested_role": caller.role.value,
        "reason": body.reason,
    }


def requested_amount(payment: Payment, body: RefundRequest, can: int) -> int:
    """What the request asks for (default: all of `can`, what is refundable now); refused
    when that is nothing or more than `can`."""
    amount = can if body.amount_paise is None else body.amount_paise
    if amount == 0 or amount > can:
        raise RefundExceedsRefundable(
            f"{can} paise of payment {payment.id} can be refunded now, {amount} requested",
            refundable_paise=can,
            requested_paise=amount,
        )
    return amount


def parts_columns(parts: Parts) -> dict[str, Any]:
    """The refund row's money columns for a refund worked out as `Parts` (of a credit
    purchase, of a service payment)."""
    return {
        "amount_paise": parts.amount_paise,
        "taxable_paise": parts.taxable_paise,
        "cgst_paise": parts.cgst_paise,
        "sgst_paise": parts.sgst_paise,
        "igst_paise": parts.igst_paise,
    }


async def announce(
    conn: AsyncConnection,
    caller: Principal,
    payment: Payment,
    refund_id: uuid.UUID,
    *,
    amount_paise: int,
    credits: int,
    details: dict[str, Any],
    before: Any = None,
    after: Any = None,
) -> Refund:
    """Audit the request, record its billing event and send `refund.processing` (the refund
    row is written by then); the refund as stored."""
    await audit.record(
        conn,
        caller,
        action="refund.requested",
        target_type="payment",
        target_id=str(payment.id),
        details=details,
        before=before,
        after=after,
    )
    await billing_events.record(
        conn,
        "refund.requested",
        payment_id=payment.id,
        refund_id=refund_id,
        user_id=payment.user_id,
        amount_paise=amount_paise,
        credits=credits,
    )
    # For whoever consumes it (events out: `refund.created`).
    await outbox.announce(
        conn,
        "refund.created",
        {
            "refund_id": str(refund_id),
            "payment_id": str(payment.id),
            "user_id": str(payment.user_id),
            "amount_paise": amount_paise,
            "credits": credits,
        },
        correlation_id=str(refund_id),
    )
    await outbox.send(
        conn,
        "refund.processing",
        "refund.requested",
        {"refund_id": str(refund_id), "source": "request"},
        correlation_id=str(payment.id),
    )
    refund = await repo.get(conn, refund_id)
    assert refund is not None
    return refund
