"""Plan changes of INR subscriptions, paid on the member's mandate (cashfree.md §12.5, §15).

A credit plan's upgrade is charged from the wallet on the spot (`service.change_plan`). An
INR plan's cannot be: a debit on a mandate is notified 24 h ahead and falls on the next day
at the earliest. So:

- *Upgrade* (to a dearer plan, same currency and interval): the rest of the current period
  is priced round-half-up((new - old) * remaining / period) paise (`proration`), GST
  inclusive and split as a period's price is (`tax.gst.compute(..., mode="inclusive")`).
  A change row is written (`raising`, keyed `subscription:<id>:upgrade:<request key>`);
  the renewal job raises its charge on the mandate (as it raises a period's: the payment
  row and the change marked `raised` in one transaction, Cashfree deduplicating by our
  payment id). The subscription stays on the old plan, showing the pending change, until
  the charge is PAID on Cashfree's API: then (`on_paid`, the payments' handover at
  PAID → CREDITED) the money is posted and the new plan takes effect. A charge that ends
  unpaid (FAILED, CANCELLED, EXPIRED, or refused) fails the change with its reason; the
  old plan stays. A prorated price under ₹1 is not worth a debit: the upgrade is applied at
  once, free (as a credit upgrade of 0 credits is).
- *Downgrade* (to a plan of the same or a lower price): at the next renewal, nothing charged
  or refunded now; the renewal prices the next period on the new plan (`inr._make_period`).
- *Refused*: a target plan above the mandate's maximum per debit (or a mandate no longer
  active): 409 `plan_change_needs_new_mandate` (a debit above the maximum is not allowed,
  §15); a second change while an upgrade waits for its charge: 409 `plan_change_pending`
  (it is never replaced: its charge may already be notified to the payer); an upgrade within
  the renewal's lead time (`subscription_inr_lead_s`: the next period's charge is about to
  be raised at the current price): 409 `plan_change_refused`.
- While an upgrade's charge is open the renewal of the next period waits for it (the next
  period is priced on the plan the subscription is on when it is made).

Lock order: the subscription's row, then (in the payments' handover) nothing else of ours.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.config import Settings
from commdesk_billing.db.engine import in_transaction
from commdesk_billing.errors import (
    PlanChangeNeedsNewMandate,
    PlanChangePending,
    PlanChangeRefused,
    SubscriptionNotFound,
)
from commdesk_billing.gateway.subscriptions import SubscriptionsClient
from commdesk_billing.modules.billing import events as billing_events
from commdesk_billing.modules.ledger import postings
from commdesk_billing.modules.ledger.journals import post_journal
from commdesk_billing.modules.mandates import service as mandates
from commdesk_billing.modules.payments.model import Payment
from commdesk_billing.modules.payments.ordering import Charge
from commdesk_billing.modules.subscriptions import change_repository as changes
from commdesk_billing.modules.subscriptions import charging, mandate_debit, proration
from commdesk_billing.modules.subscriptions import repository as repo
from commdesk_billing.modules.subscriptions.model import (
    OPEN_CHANGE,
    ChangeStatus,
    Plan,
    PlanChange,
    Status,
    Subscription,
)

log = structlog.get_logger(__name__)

# The payments' kind of the prorated charge: the same as a period's (`inr.KIND`); the
# handover tells them apart by the row that names the payment (`paid.on_paid`).
KIND = mandate_debit.KIND
# Below ₹1 a debit on the mandate (a notice to the payer, a day's wait) is not raised.
MIN_CHARGE_PAISE = 100
_IDS = uuid.UUID("5b0e7f6a-2d39-4c1e-8a57-9f3c1d2e4b60")


@dataclass(frozen=True)
class Requested:
    subscription: Subscription
    direction: str  # "upgrade" or "downgrade"
    prorated_paise: int
    effective_at: datetime | None  # None: when the pending change's charge is paid
    change: PlanChange | None  # the pending upgrade


async def check_open(conn: AsyncConnection, sub: Subscription) -> None:
    if await changes.open_change(conn, sub.id) is not None:
        raise PlanChangePending("an upgrade is waiting for its payment on the mandate")


async def request(
    conn: AsyncConnection,
    sub: Subscription,
    current: Plan,
    target: Plan,
    *,
    operation_key: str,
    at: datetime,
    lead_s: int,
) -> Requested:
    """The INR half of `service.change_plan`, on the locked, active subscription whose
    change to `target` passed the common checks (currency, interval, one live per plan)."""
    mandate_id = sub.mandate_id
    assert mandate_id is not None
    assert current.price_paise is not None and target.price_paise is not None
    await check_open(conn, sub)
    mandate = await mandates.usable(conn, mandate_id, sub.user_id)
    if mandate is None or mandate.max_amount_paise < target.price_paise:
        raise PlanChangeNeedsNewMandate(
            "the plan's price is above the mandate's maximum per debit, or the mandate is not "
            "active: set up a new mandate covering it",
            price_paise=target.price_paise,
            max_amount_paise=mandate.max_amount_paise if mandate else None,
        )
    if target.price_paise <= current.price_paise:
        sub = await repo.update_subscription(
            conn, sub.id, next_plan_code=target.code, next_plan_version=target.version
        )
        return Requested(sub, "downgrade", 0, sub.current_period_end, None)
    if sub.current_period_end - timedelta(seconds=lead_s) <= at:
        # The next period's charge is due (raised at the current price): an upgrade now would
        # be charged for days that period's price already covers, or be undone by it.
        raise PlanChangeRefused("the period is about to renew; upgrade after the renewal")
    paise = proration.upgrade_charge(
        current.price_paise,
        target.price_paise,
        period_start=sub.current_period_start,
        period_end=sub.current_period_end,
        at=at,
    )
    if paise < MIN_CHARGE_PAISE:
        sub = await _switch(conn, sub.id, target.code, target.version)
        # The one switch with no paid change behind it: logged, so `ledger verify` tells it
        # from a plan switched without its payment (`invariants.subscription_plan_changes`).
        await billing_events.record(
            conn,
            "subscription.plan_changed",
            user_id=sub.user_id,
            amount_paise=0,
            data={
                "subscription_id": str(sub.id),
                "user_ref": sub.user_ref,
                "from_plan": f"{current.code}:{current.version}",
                "to_plan": f"{target.code}:{target.version}",
                "price_paise": 0,
                "period": sub.current_period,
            },
        )
        return Requested(sub, "upgrade", 0, at, None)
    key = charging.upgrade_key(sub.id, operation_key)
    change = await changes.insert(
        conn,
        change_id=uuid.uuid5(_IDS, key),
        subscription_id=sub.id,
        operation_key=key,
        period_number=sub.current_period,
        from_plan=(current.code, current.version),
        to_plan=(target.code, target.version),
        mandate_id=mandate_id,
        price_paise=paise,
        at=at,
    )
    if change is None or not change.open:  # (another change won the index: under our lock
        raise PlanChangePending("an upgrade is waiting for its payment on the mandate")
    await _record(conn, sub, "subscription.plan_change_requested", change)
    return Requested(sub, "upgrade", paise, None, change)


async def _switch(conn: AsyncConnection, sid: uuid.UUID, code: str, version: int) -> Subscription:
    return await repo.update_subscription(
        conn,
        sid,
        plan_code=code,
        plan_version=version,
        next_plan_code=None,
        next_plan_version=None,
    )


async def _record(
    conn: AsyncConnection, sub: Subscription, event: str, change: PlanChange, **extra: object
) -> None:
    """The billing log's line (analytics; the member's history of changes)."""
    await billing_events.record(
        conn,
        event,
        user_id=sub.user_id,
        amount_paise=change.price_paise,
        payment_id=change.payment_id,
        data={
            "subscription_id": str(sub.id),
            "user_ref": sub.user_ref,
            "from_plan": f"{change.from_plan_code}:{change.from_plan_version}",
            "to_plan": f"{change.to_plan_code}:{change.to_plan_version}",
            "price_paise": change.price_paise,
            "change_id": str(change.id),
            **extra,
        },
    )


async def settle(conn: AsyncConnection, sub: Subscription, at: datetime) -> PlanChange | None:
    """Under the subscription's row lock (the renewal job's `decide`): the open change still
    to act on (`raising`: raise its charge; `raised`: its debit awaited), after failing one
    whose payment ended unpaid. None: no change is open."""
    change = await changes.open_change(conn, sub.id)
    if change is not None and change.status is ChangeStatus.raising:
        if at < sub.current_period_end:
            return change
        # Not raised before its period ended (the job did not run): its price was for the
        # rest of a period now over; charged now, it would buy nothing.
        await _fail(conn, sub, change, "the period ended before its charge was raised")
        return None
    if change is None:
        return None
    assert change.payment_id is not None
    reason = await mandate_debit.unpaid_reason(conn, change.payment_id)
    if reason is None and await mandate_debit.in_review(conn, change.payment_id):
        # Never credited from there: waiting for it would hold the renewal for good (the
        # next period never charged, never lapsing). The old plan stays; finance settles
        # whatever Cashfree debits under it. (No new charge is raised for the change.)
        reason = "payment held for review"
    if reason is None:
        return change
    await _fail(conn, sub, change, reason)
    return None


async def on_ended(conn: AsyncConnection, sub: Subscription, reason: str) -> None:
    """The locked subscription ends (cancelled now, expired): an upgrade waiting for its
    payment fails. Its charge, if raised, is not cancelled at Cashfree: a debit that still
    succeeds is kept and marked `unapplied` for finance to refund (`on_paid`)."""
    change = await changes.open_change(conn, sub.id)
    if change is not None:
        await _fail(conn, sub, change, f"subscription ended: {reason}")


async def _fail(conn: AsyncConnection, sub: Subscription, change: PlanChange, reason: str) -> None:
    if await changes.move(
        conn, change, to=ChangeStatus.failed, sources=OPEN_CHANGE, failure=reason
    ):
        log.info(
            "subscriptions.inr.plan_change_failed",
            subscription_id=str(sub.id),
            change_id=str(change.id),
            reason=reason[:100],
        )
        await _record(conn, sub, "subscription.plan_change_failed", change, reason=reason[:100])


async def _charge_of(
    conn: AsyncConnection, settings: Settings, change: PlanChange
) -> tuple[Subscription, Charge]:
    sub = await repo.get_subscription(conn, change.subscription_id)
    if sub is None:
        raise SubscriptionNotFound(f"subscription {change.subscription_id} does not exist")
    return sub, await mandate_debit.charge(
        conn,
        settings,
        user_id=sub.user_id,
        mandate_id=change.mandate_id,
        price_paise=change.price_paise,
        about=f"subscription upgrade {change.from_plan_code} -> {change.to_plan_code}",
        request={
            "subscription_id": str(change.subscription_id),
            "plan_change": str(change.id),
            "price_paise": change.price_paise,
        },
    )


async def raise_charge(
    engine: AsyncEngine,
    client: SubscriptionsClient,
    settings: Settings,
    change: PlanChange,
    at: datetime,
) -> bool:
    """Raise the change's prorated charge on the mandate (no transaction held across
    Cashfree); the payment row and the change marked `raised` are written in one
    transaction. False when the charge was refused for good (the change failed, the old
    plan stays); Cashfree away leaves it `raising`, raised again by the next run."""
    sub, charge = await in_transaction(engine, lambda c: _charge_of(c, settings, change))

    async def attach(conn: AsyncConnection, payment: Payment) -> None:
        # The change may have failed since the renewal's decision let go of the row lock
        # (the member cancelled): then no charge is written, or Cashfree would debit money
        # no change names and the crediting could not place (raising rolls the row back).
        if not await changes.move(
            conn,
            change,
            to=ChangeStatus.raised,
            sources=(ChangeStatus.raising,),
            payment_id=payment.id,
        ):
            raise PlanChangeRefused("the plan change is no longer waiting for its charge")

    return await mandate_debit.raise_on_mandate(
        engine,
        client,
        settings,
        charge,
        mandate_id=change.mandate_id,
        key=change.operation_key,
        at=at,
        attach=attach,
        refused=lambda c, reason: _refused(c, sub, change, reason),
        deferred_event="subscriptions.inr.plan_change_deferred",
        subscription_id=sub.id,
    )


async def _refused(
    conn: AsyncConnection, sub: Subscription, change: PlanChange, reason: str
) -> None:
    await repo.get_subscription(conn, sub.id, lock=True)
    current = await changes.by_key(conn, change.operation_key)
    assert current is not None
    if current.status is ChangeStatus.raised and await mandate_debit.lives_on(
        conn, current.payment_id
    ):
        return  # the payment lives on (in review): its outcome decides
    await _fail(conn, sub, current, reason)


async def on_paid(conn: AsyncConnection, payment: Payment, at: datetime) -> bool:
    """The payments' handover for a paid `subscription` payment that is a change's (False:
    it is not). The money is posted whatever became of the subscription; the new plan takes
    effect if the subscription is still active on the plan and period the change was asked
    from (and the change still open), else the change is `unapplied` (money for finance to
    refund, as a period's)."""
    change = await changes.by_payment(conn, payment.id)
    if change is None:
        return False
    if payment.amount_paise != change.price_paise or (
        payment.taxable_paise + payment.gst_amount_paise != payment.amount_paise
    ):
        raise LookupError(f"payment {payment.id} and its plan change disagree")
    sub = await repo.get_subscription(conn, change.subscription_id, lock=True)
    assert sub is not None
    await post_journal(
        conn,
        postings.subscription_paid(
            payment_id=payment.id,
            subscription_id=sub.id,
            period_number=change.period_number,
            amount=payment.amount_paise,
            taxable=payment.taxable_paise,
            gst=payment.gst_amount_paise,
            at=at,
        ),
    )
    # (A member who asked to stop at the period's end still gets the plan they paid the
    # rest of the period for.)
    applicable = (
        sub.status is Status.active
        and sub.current_period == change.period_number
        and (sub.plan_code, sub.plan_version) == (change.from_plan_code, change.from_plan_version)
    )
    if not applicable or not await changes.move(
        conn, change, to=ChangeStatus.applied, sources=OPEN_CHANGE, payment_id=payment.id
    ):
        # A change that failed (its payment written off, then paid late) or a subscription
        # that moved on: kept (posted above), marked for finance to refund, logged as error.
        await changes.move(
            conn,
            change,
            to=ChangeStatus.unapplied,
            sources=(*OPEN_CHANGE, ChangeStatus.failed),
            payment_id=payment.id,
        )
        log.error(
            "subscriptions.inr.plan_change_unapplied",
            subscription_id=str(sub.id),
            change_id=str(change.id),
            payment_id=str(payment.id),
        )
        return True
    sub = await _switch(conn, sub.id, change.to_plan_code, change.to_plan_version)
    await _record(conn, sub, "subscription.plan_changed", change)
    return True


async def of_subscription(conn: AsyncConnection, sid: uuid.UUID) -> list[PlanChange]:
    return await changes.of_subscription(conn, sid)


async def pending(conn: AsyncConnection, sid: uuid.UUID) -> PlanChange | None:
    return await changes.open_change(conn, sid)
