"""An INR period's payment arrived: the payments module's handover for a `subscription`
payment (`inr.py` raises them; `wiring.py` gives this to `payments.crediting`)."""

from __future__ import annotations

from datetime import datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.modules.ledger import postings
from commdesk_billing.modules.ledger.journals import post_journal
from commdesk_billing.modules.payments.model import Payment
from commdesk_billing.modules.subscriptions import attempt_repository as attempts
from commdesk_billing.modules.subscriptions import charging, inr, inr_change, plans
from commdesk_billing.modules.subscriptions import repository as repo
from commdesk_billing.modules.subscriptions import service as subs
from commdesk_billing.modules.subscriptions.model import (
    LIVE,
    AttemptStatus,
    PeriodStatus,
    Status,
    boundary,
)

log = structlog.get_logger(__name__)

KIND = inr.KIND


async def on_paid(conn: AsyncConnection, payment: Payment, at: datetime) -> None:
    """The handover for a paid `subscription` payment (its row locked, PAID; it moves to
    CREDITED after this, in this transaction): a period's, or an upgrade's prorated charge
    (`inr_change.on_paid`). The money is posted whatever became of the
    subscription; the period is paid once, by the attempt that is its open one."""
    attempt = await attempts.attempt_by_payment(conn, payment.id)
    if attempt is None and await inr_change.on_paid(conn, payment, at):
        return  # an upgrade's prorated charge
    if attempt is None:
        raise LookupError(f"payment {payment.id} is a subscription payment of no period")
    if payment.amount_paise != attempt.price_paise or (
        payment.taxable_paise + payment.gst_amount_paise != payment.amount_paise
    ):
        raise LookupError(f"payment {payment.id} and its subscription period disagree")
    sub = await subs.lock(conn, attempt.subscription_id)
    await post_journal(
        conn,
        postings.subscription_paid(
            payment_id=payment.id,
            subscription_id=sub.id,
            period_number=attempt.period_number,
            amount=payment.amount_paise,
            taxable=payment.taxable_paise,
            gst=payment.gst_amount_paise,
            at=at,
        ),
    )
    period = await repo.get_period(conn, sub.id, attempt.period_number)
    assert period is not None
    payable = (
        sub.status in LIVE
        # A member who asked to stop at the period's end is not renewed by a charge that
        # was already in flight when they asked: it is listed for refund below.
        and not sub.cancel_at_period_end
        and period.status in (PeriodStatus.pending, PeriodStatus.past_due)
        and period.number == inr.due_number(sub)
    )
    sources = (AttemptStatus.raising, AttemptStatus.raised, AttemptStatus.failed)
    if not payable or not await attempts.set_attempt(
        conn, attempt, to=AttemptStatus.paid, sources=sources
    ):
        # Money for a period that is paid already, of a subscription that ended or is set
        # to end: kept (posted above), the attempt marked `unapplied` for finance to refund
        # (the runbook), and logged at error level.
        await attempts.set_attempt(conn, attempt, to=AttemptStatus.unapplied, sources=sources)
        log.error(
            "subscriptions.inr.payment_unapplied",
            subscription_id=str(sub.id),
            period=attempt.period_number,
            payment_id=str(payment.id),
        )
        return
    plan = await plans.version(conn, period.plan_code, period.plan_version)
    start, end = period.period_start, period.period_end
    if sub.status is Status.pending:
        # Period 1 starts when it is paid: nothing was served while it waited.
        start, end = at, boundary(at, plan.interval_unit, plan.interval_count, 1)
        await repo.set_period_bounds(conn, sub.id, period.number, start, end)
        await repo.update_subscription(conn, sub.id, anchor_at=at)
    await repo.update_period(
        conn,
        sub.id,
        period.number,
        status=PeriodStatus.paid,
        attempts=max(period.attempts, attempt.attempt),
        next_retry_at=None,
        paid_at=at,
    )
    sub = await repo.update_subscription(
        conn,
        sub.id,
        status=Status.active,
        current_period=period.number,
        current_period_start=start,
        current_period_end=end,
        plan_code=period.plan_code,
        plan_version=period.plan_version,
        next_plan_code=None,
        next_plan_version=None,
    )
    await charging.announce_renewed(
        conn,
        sub,
        {
            "plan_name": plan.name,
            "period": period.number,
            "period_start": charging.iso(start),
            "period_end": charging.iso(end),
            "price_paise": attempt.price_paise,
            "payment_id": str(payment.id),
        },
    )
