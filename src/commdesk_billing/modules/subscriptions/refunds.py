"""What a refund of an INR period's payment (a `subscription` payment, `inr.py`) is to the
subscriptions: the refunds module asks here whether a payment is a period's charge that can
be refunded, and which period it paid.

The rule (docs/architecture.md): finance refunds money a period took (`paid`) or money no
period took (`unapplied`: a charge that landed after the subscription ended, or for a period
paid already). A refund changes no period and no subscription: a refunded period stays paid
and is served to its end (a goodwill or partial refund does not cut the service short), and
a subscription that should stop is cancelled on its own (`POST /v1/subscriptions/{id}/cancel`).
The money is what moves back: `subscription.refund_owed` takes the refund's taxable value out
of subscription revenue and its GST out of GST payable, as `subscription.paid` put them in.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.modules.payments.model import Payment
from commdesk_billing.modules.subscriptions import attempt_repository as attempts
from commdesk_billing.modules.subscriptions import change_repository as changes
from commdesk_billing.modules.subscriptions import inr
from commdesk_billing.modules.subscriptions.model import AttemptStatus, ChangeStatus

KIND = inr.KIND


@dataclass(frozen=True)
class PeriodPayment:
    """The period charge a payment is: its subscription, period and attempt, and whether a
    period took the money (`paid`) or none did (`unapplied`)."""

    subscription_id: uuid.UUID
    period_number: int
    attempt: int
    applied: bool


def is_period_payment(payment: Payment) -> bool:
    return payment.kind == KIND


async def period_payment(conn: AsyncConnection, payment_id: uuid.UUID) -> PeriodPayment | None:
    """The period charge (or plan change) `payment_id` paid, when it was paid (`paid`/`applied`
    or `unapplied`); None for a payment that is neither or whose charge never succeeded."""
    attempt = await attempts.attempt_by_payment(conn, payment_id)
    if attempt is None:
        # An upgrade's prorated charge (`inr_change.py`) is a `subscription` payment too,
        # posted by `subscription.paid` as a period's; one left `unapplied` is money for
        # finance to refund. Its period is the one it was asked in; it has no attempt (0).
        change = await changes.by_payment(conn, payment_id)
        if change is None or change.status not in (ChangeStatus.applied, ChangeStatus.unapplied):
            return None
        return PeriodPayment(
            subscription_id=change.subscription_id,
            period_number=change.period_number,
            attempt=0,
            applied=change.status is ChangeStatus.applied,
        )
    if attempt.status not in (AttemptStatus.paid, AttemptStatus.unapplied):
        return None
    return PeriodPayment(
        subscription_id=attempt.subscription_id,
        period_number=attempt.period_number,
        attempt=attempt.attempt,
        applied=attempt.status is AttemptStatus.paid,
    )
