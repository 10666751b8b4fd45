"""INR subscriptions: each period's price is a payment of kind `subscription` charged on the
member's UPI AutoPay / card mandate (cashfree.md §12.5, §15).

India's rules forbid a debit on the spot: Cashfree sends the pre-debit notice, and the debit
comes no earlier than 24 h after it and not before the schedule date (T+1, T+2 after 21:00
IST). So:

- *Subscribing* makes the subscription `pending` with period 1 `pending`: no service until
  the first charge is PAID. When it is, period 1 starts then (its anchor is the payment's
  time: the member is never billed for days they could not use).
- *Renewal* raises period n + 1's charge `subscription_inr_lead_s` before period n ends
  (at least the notice plus the earliest debit), so a paying member never lapses.
- *Exactly one charge per attempt*: the attempt's row (`subscription_mandate_charges`, one
  open per period by a unique index) is written under the subscription's row lock before
  Cashfree is called, and the payment is keyed `subscription:<id>:period:<n>` (attempt 1)
  or `…:attempt:<k>` (a dunning retry): a racing job or a re-run after a crash finds the
  same row and the same payment, and Cashfree deduplicates the charge by our payment id.
- *Paid*: only on Cashfree's subscription payment API (the mandate-charge truth path), then
  handed to `paid.on_paid` at PAID → CREDITED (given to payments by `wiring`) in the same
  transaction: the period is paid once, the subscription moves on, `subscription.paid`
  (Dr gateway clearing; Cr subscription revenue, GST payable) is posted, and the tax
  invoice follows `payment.credited` as for any payment.
- *Failed* (the payment FAILED, CANCELLED or EXPIRED, or the mandate not usable): the
  period is past due and retried at the plan's dunning offsets (a new charge per attempt)
  while the grace lasts; past the grace, with no charge in flight, the subscription expires.

GST: an INR plan's price is GST-inclusive (`tax.gst.compute(..., mode="inclusive")`): the
member is debited exactly the plan's price — the amount the pre-debit notice announced and
the mandate's maximum is compared with.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.config import Settings
from commdesk_billing.db.engine import in_transaction
from commdesk_billing.errors import SubscriptionNotActive
from commdesk_billing.gateway.subscriptions import SubscriptionsClient
from commdesk_billing.modules.mandates import service as mandates
from commdesk_billing.modules.payments.model import Payment
from commdesk_billing.modules.payments.ordering import Charge
from commdesk_billing.modules.subscriptions import attempt_repository as attempts
from commdesk_billing.modules.subscriptions import charging, inr_change, mandate_debit, plans
from commdesk_billing.modules.subscriptions import repository as repo
from commdesk_billing.modules.subscriptions import service as subs
from commdesk_billing.modules.subscriptions.model import (
    LIVE,
    AttemptStatus,
    ChangeStatus,
    MandateAttempt,
    Period,
    PeriodStatus,
    Plan,
    PlanChange,
    Status,
    Subscription,
    boundary,
)

log = structlog.get_logger(__name__)

KIND = mandate_debit.KIND  # the payments' kind of an INR period's payment


class Step(StrEnum):
    raise_charge = "raise_charge"  # an attempt is written: raise its charge (outside)
    raise_change = "raise_change"  # an upgrade is written: raise its prorated charge
    charging = "charging"  # a charge is in flight: its outcome is awaited
    failed = "failed"  # an attempt failed now (dunning)
    ended = "ended"
    waiting = "waiting"  # in dunning, the next attempt later
    nothing = "nothing"


def attempt_key(subscription_id: uuid.UUID, n: int, attempt: int) -> str:
    """The payment's deterministic key: the period's key for its first charge, one per
    dunning retry after it."""
    base = charging.period_key(subscription_id, n)
    return base if attempt == 1 else f"{base}:attempt:{attempt}"


def next_retry(plan: Plan, period: Period, at: datetime) -> datetime | None:
    """After a failed attempt at `at`: the first of the plan's dunning times (the period's
    start + each offset) still ahead and within the grace. None: no more attempts (the
    subscription expires when the grace ends). Unlike a credit plan there is no extra try
    at the grace's very end: a charge raised then could not be debited before it ends."""
    times = [period.period_start + timedelta(seconds=s) for s in plan.dunning_offsets_s]
    return next((t for t in times if at < t <= period.grace_until), None)


def due_number(sub: Subscription) -> int:
    return sub.current_period if sub.status is Status.pending else sub.current_period + 1


@dataclass(frozen=True)
class Decision:
    step: Step
    attempt: MandateAttempt | None = None
    change: PlanChange | None = None


async def decide(conn: AsyncConnection, sid: uuid.UUID, at: datetime, lead_s: int) -> Decision:
    """One transaction under the subscription's row lock: make the period that is due,
    settle a finished attempt, write the next attempt when one is due, or expire."""
    sub = await subs.lock(conn, sid)
    if sub.status not in LIVE or sub.mandate_id is None:
        return Decision(Step.nothing)
    change = await inr_change.settle(conn, sub, at)
    if change is not None:
        if change.status is ChangeStatus.raising:
            return Decision(Step.raise_change, change=change)
        # An upgrade's charge is in flight: the next period waits for its outcome (it is
        # priced on the plan the subscription is on when it is made).
        return Decision(Step.charging)
    if sub.status is not Status.pending:
        if sub.cancel_at_period_end and sub.status is Status.active:
            if sub.current_period_end > at:
                return Decision(Step.nothing)  # ends with what is paid; nothing raised
            await subs.end(
                conn, sub, at=sub.current_period_end, status=Status.cancelled, reason="cancelled"
            )
            return Decision(Step.ended)
        if sub.current_period_end - timedelta(seconds=lead_s) > at:
            return Decision(Step.nothing)
    n = due_number(sub)
    period = await repo.get_period(conn, sid, n)
    if period is None:
        period = await _make_period(conn, sub, n, at)
    if period.status not in (PeriodStatus.pending, PeriodStatus.past_due):
        return Decision(Step.nothing)
    plan = await plans.version(conn, period.plan_code, period.plan_version)
    outcome = Step.waiting
    open_attempt = await attempts.open_attempt(conn, sid, n)
    if open_attempt is not None:
        if open_attempt.status is AttemptStatus.raising:
            return Decision(Step.raise_charge, open_attempt)  # resume a crashed raise
        assert open_attempt.payment_id is not None
        reason = await mandate_debit.unpaid_reason(conn, open_attempt.payment_id)
        if reason is None:
            return Decision(Step.charging, open_attempt)
        await _fail(conn, sub, period, plan, open_attempt, reason, at)
        period = await repo.get_period(conn, sid, n) or period
        outcome = Step.failed
    elif period.next_retry_at is not None and period.next_retry_at <= at:
        mandate = await mandates.usable(conn, sub.mandate_id, sub.user_id)
        assert period.price_paise is not None
        attempt = await attempts.insert_attempt(
            conn,
            subscription_id=sid,
            period_number=n,
            attempt=period.attempts + 1,
            operation_key=attempt_key(sid, n, period.attempts + 1),
            mandate_id=sub.mandate_id,
            price_paise=period.price_paise,
        )
        await repo.update_period(
            conn,
            sid,
            n,
            status=period.status,
            attempts=attempt.attempt,
            next_retry_at=None,
            paid_at=None,
        )
        if mandate is not None and mandate.max_amount_paise >= period.price_paise:
            return Decision(Step.raise_charge, attempt)
        # Revoked, paused or expired (or its maximum lowered below the price): nothing can
        # be raised; the member is told, and dunning carries on in case they fix it.
        period = await repo.get_period(conn, sid, n) or period
        await _fail(conn, sub, period, plan, attempt, "mandate_not_active", at)
        period = await repo.get_period(conn, sid, n) or period
        outcome = Step.failed
    if at >= period.grace_until and await attempts.open_attempt(conn, sid, n) is None:
        sub = await subs.lock(conn, sid)
        sub = await subs.end(
            conn, sub, at=period.grace_until, status=Status.expired, reason="unpaid"
        )
        await charging.announce_cancelled(
            conn, sub, {"plan_name": plan.name, "ends_at": charging.iso(period.grace_until)}
        )
        return Decision(Step.ended)
    return Decision(outcome)


async def _renewal_plan(conn: AsyncConnection, sub: Subscription) -> Plan:
    # A waiting downgrade prices the next period (as `renewal._renewal_plan`), unless the
    # member has since subscribed to that plan on its own (one live subscription per plan).
    if (
        sub.status is not Status.pending
        and sub.next_plan_code is not None
        and sub.next_plan_version is not None
        and not await repo.holds_live(conn, sub.user_id, sub.next_plan_code)
    ):
        return await plans.version(conn, sub.next_plan_code, sub.next_plan_version)
    return await plans.latest(conn, sub.plan_code)


async def _make_period(conn: AsyncConnection, sub: Subscription, n: int, at: datetime) -> Period:
    plan = await _renewal_plan(conn, sub)
    assert plan.price_paise is not None  # a plan code keeps its currency
    start = sub.current_period_end
    period = Period(
        subscription_id=sub.id,
        number=n,
        period_start=start,
        period_end=boundary(sub.anchor_at, plan.interval_unit, plan.interval_count, n),
        plan_code=plan.code,
        plan_version=plan.version,
        price_credits=None,
        price_paise=plan.price_paise,
        status=PeriodStatus.pending,
        attempts=0,
        next_retry_at=at,  # due now: raised ahead of its start
        grace_until=start + timedelta(seconds=plan.grace_period_s),
        paid_at=None,
    )
    await repo.insert_period(conn, period)
    made = await repo.get_period(conn, sub.id, n)
    assert made is not None
    return made


async def _fail(
    conn: AsyncConnection,
    sub: Subscription,
    period: Period,
    plan: Plan,
    attempt: MandateAttempt,
    reason: str,
    at: datetime,
) -> None:
    """The attempt failed: the period is past due, the next attempt scheduled by the plan's
    dunning, the member told (`subscription.renewal_failed`), once per attempt."""
    moved = await attempts.set_attempt(
        conn,
        attempt,
        to=AttemptStatus.failed,
        sources=(AttemptStatus.raising, AttemptStatus.raised),
        failure=reason,
    )
    if not moved:
        return
    retry = next_retry(plan, period, at)
    await repo.update_period(
        conn,
        sub.id,
        period.number,
        status=PeriodStatus.past_due,
        attempts=max(period.attempts, attempt.attempt),
        next_retry_at=retry,
        paid_at=None,
    )
    if sub.status is Status.active:
        sub = await repo.update_subscription(conn, sub.id, status=Status.past_due)
    log.info(
        "subscriptions.inr.attempt_failed",
        subscription_id=str(sub.id),
        period=period.number,
        attempt=attempt.attempt,
        reason=reason[:100],
    )
    await charging.announce_renewal_failed(
        conn,
        sub,
        {
            "plan_name": plan.name,
            "attempt": attempt.attempt,
            "next_retry_at": charging.iso(retry),
            "grace_until": charging.iso(period.grace_until),
            "reason": reason[:100],
        },
    )


async def _charge_of(
    conn: AsyncConnection, settings: Settings, sub: Subscription, attempt: MandateAttempt
) -> tuple[Charge, Plan]:
    period = await repo.get_period(conn, sub.id, attempt.period_number)
    assert period is not None
    plan = await plans.version(conn, period.plan_code, period.plan_version)
    charge = await mandate_debit.charge(
        conn,
        settings,
        user_id=sub.user_id,
        mandate_id=attempt.mandate_id,
        price_paise=attempt.price_paise,
        about=f"subscription {plan.name}, period {attempt.period_number}",
        request={
            "subscription_id": str(sub.id),
            "period": attempt.period_number,
            "attempt": attempt.attempt,
            "price_paise": attempt.price_paise,
        },
    )
    return charge, plan


async def raise_charge(
    engine: AsyncEngine,
    client: SubscriptionsClient,
    settings: Settings,
    attempt: MandateAttempt,
    at: datetime,
) -> Step:
    """Raise the attempt's charge on the mandate (no transaction held across Cashfree). The
    payment's row is written with the attempt marked `raised` in one transaction (`attach`);
    a refusal that no repeat can fix fails the attempt; Cashfree away leaves it `raising`,
    raised again under the same key by the next run."""
    sid = attempt.subscription_id
    sub = await in_transaction(engine, lambda c: subs.get(c, sid))
    charge, _plan = await in_transaction(engine, lambda c: _charge_of(c, settings, sub, attempt))

    async def attach(conn: AsyncConnection, payment: Payment) -> None:
        # The subscription may have ended since `decide` let go of its row lock (the attempt
        # failed by `subs.end`): then nothing is written or charged (raising rolls back).
        if not await attempts.set_attempt(
            conn,
            attempt,
            to=AttemptStatus.raised,
            sources=(AttemptStatus.raising,),
            payment_id=payment.id,
        ):
            raise SubscriptionNotActive("the period's charge is no longer to be raised")

    raised = await mandate_debit.raise_on_mandate(
        engine,
        client,
        settings,
        charge,
        mandate_id=attempt.mandate_id,
        key=attempt.operation_key,
        at=at,
        attach=attach,
        refused=lambda c, reason: _refused(c, attempt, reason, at),
        deferred_event="subscriptions.inr.raise_deferred",
        subscription_id=sid,
    )
    return Step.charging if raised else Step.failed


async def _refused(
    conn: AsyncConnection, attempt: MandateAttempt, reason: str, at: datetime
) -> None:
    sub = await subs.lock(conn, attempt.subscription_id)
    period = await repo.get_period(conn, sub.id, attempt.period_number)
    assert period is not None
    plan = await plans.version(conn, period.plan_code, period.plan_version)
    current = await attempts.get_attempt(conn, sub.id, attempt.period_number, attempt.attempt)
    assert current is not None
    if current.status is AttemptStatus.raised and await mandate_debit.lives_on(
        conn, current.payment_id
    ):
        return  # the payment lives on (in review): its outcome decides
    await _fail(conn, sub, period, plan, current, reason, at)


async def renew_one(
    engine: AsyncEngine,
    client: SubscriptionsClient,
    settings: Settings,
    sid: uuid.UUID,
    at: datetime,
) -> Step:
    decision = await in_transaction(
        engine, lambda c: decide(c, sid, at, settings.subscription_inr_lead_s)
    )
    if decision.step is Step.raise_charge:
        assert decision.attempt is not None
        return await raise_charge(engine, client, settings, decision.attempt, at)
    if decision.step is Step.raise_change:
        assert decision.change is not None
        raised = await inr_change.raise_charge(engine, client, settings, decision.change, at)
        return Step.charging if raised else Step.failed
    return decision.step
