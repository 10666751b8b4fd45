"""Asking for a refund of an INR subscription period's payment (a `subscription` payment,
charged on the member's mandate): `requesting.open_refund` hands it here once the payment is
locked and CREDITED. What it does to the subscription (nothing: see
`subscriptions/refunds.py`) is the subscriptions module's rule; this writes the refund row and
sends `refund.processing`, as for any refund.
"""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.errors import InvalidAmount, PaymentNotRefundable
from commdesk_billing.modules.payments.model import Payment
from commdesk_billing.modules.refunds import auth, opening
from commdesk_billing.modules.refunds import repository as repo
from commdesk_billing.modules.refunds.allocation import Service, next_service_refund
from commdesk_billing.modules.refunds.model import Refund, RefundStatus
from commdesk_billing.modules.refunds.schemas import RefundRequest
from commdesk_billing.modules.subscriptions import refunds as subscription_refunds
from commdesk_billing.security.jwt import Principal


async def open_period_refund(
    conn: AsyncConnection,
    caller: Principal,
    payment: Payment,
    body: RefundRequest,
    operation_key: str,
) -> Refund:
    """An INR subscription period's payment (finance_admin only): any amount up to what its
    standing refunds left (default: all of it), its taxable value and GST in the invoice's
    proportion, cumulatively. No credits, no hold: the period is not touched (see
    `subscriptions/refunds.py` for why). The payment's row lock (taken by the caller)
    serializes refunds of one payment, so two cannot both take the last of it."""
    auth.authorize_subscription_refund(caller)
    if body.milestones is not None:
        raise InvalidAmount("milestones name a sponsorship's refund; this is a subscription's")
    period = await subscription_refunds.period_payment(conn, payment.id)
    if period is None:
        raise PaymentNotRefundable(
            f"payment {payment.id} is a subscription payment no period's charge paid"
        )
    standing = await repo.standing_parts(conn, payment.id)
    can = payment.amount_paise - standing.amount_paise
    amount = opening.requested_amount(payment, body, can)
    service = Service(
        amount_paise=payment.amount_paise,
        taxable_paise=payment.taxable_paise,
        cgst_paise=payment.cgst_paise,
        sgst_paise=payment.sgst_paise,
        igst_paise=payment.igst_paise,
    )
    parts = next_service_refund(service, standing, amount)
    refund_id = uuid.uuid4()
    await repo.insert(
        conn,
        {
            **opening.row(refund_id, caller, payment, body, operation_key),
            **opening.parts_columns(parts),
            "passthrough_paise": 0,
            "of_service": True,
            "base_credits": 0,
            "bonus_credits": 0,
            "purchase_lot_id": None,
            "bonus_lot_id": None,
            "hold_id": None,
            "status": RefundStatus.CREATED.value,
        },
    )
    return await opening.announce(
        conn,
        caller,
        payment,
        refund_id,
        amount_paise=amount,
        credits=0,
        details={
            "refund_id": str(refund_id),
            "amount_paise": amount,
            "subscription_id": str(period.subscription_id),
            "period": period.period_number,
            "applied": period.applied,
            "reason": body.reason,
        },
    )
