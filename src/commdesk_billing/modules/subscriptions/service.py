"""A member's subscriptions: subscribe, read, cancel, change plan.

Each call runs in the caller's transaction. Lock order: the subscription's row
(`FOR UPDATE`), then the wallet's (taken by the wallet service): a plan change, a
cancellation and the renewal job serialize on the subscription, and the wallet lock is
always taken second, as after a payment's row elsewhere.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.errors import (
    PlanChangeRefused,
    SubscriptionMandateRequired,
    SubscriptionNotActive,
    SubscriptionNotFound,
)
from commdesk_billing.modules.mandates import service as mandates
from commdesk_billing.modules.subscriptions import attempt_repository as attempts
from commdesk_billing.modules.subscriptions import auth, charging, inr_change, plans, proration
from commdesk_billing.modules.subscriptions import repository as repo
from commdesk_billing.modules.subscriptions.model import (
    LIVE,
    AttemptStatus,
    Currency,
    Period,
    PeriodStatus,
    Plan,
    PlanChange,
    Status,
    Subscription,
    boundary,
)
from commdesk_billing.modules.users import service as users
from commdesk_billing.modules.wallet import service as ws
from commdesk_billing.security.jwt import Principal

# Subscription ids are derived from the request's operation key, so a retried transaction
# makes the same subscription.
_IDS = uuid.UUID("0c8f3c1e-5a7d-4f2b-9e61-3b9d2a4c7e10")


def now() -> datetime:
    return datetime.now(UTC)


async def subscribe(
    conn: AsyncConnection,
    principal: Principal,
    *,
    plan_code: str,
    operation_key: str,
    at: datetime | None = None,
    mandate_id: uuid.UUID | None = None,
) -> Subscription:
    """Subscribe the caller to the plan's latest version. A credit plan's first period is
    paid at once from their wallet (hold + capture), or nothing happens
    (`InsufficientCredits`). An INR plan's is charged on `mandate_id` (the caller's own
    active mandate, its maximum at least the price): the subscription is `pending`, with no
    service, until that charge is paid (`inr.py`; the debit comes a day or more later)."""
    auth.authorize_subscribe(principal)
    at = at or now()
    plan = await plans.sellable(conn, plan_code)
    wallet = await ws.get_or_create_user_wallet(
        conn, principal.sub, email=principal.email, name=principal.name
    )
    assert wallet.owner_id is not None
    sid = uuid.uuid5(_IDS, operation_key)
    if plan.currency is Currency.inr:
        return await _subscribe_inr(
            conn, principal, plan, sid, wallet.owner_id, wallet.id, at, mandate_id
        )
    if mandate_id is not None:
        raise SubscriptionMandateRequired("a plan priced in credits is paid from the wallet")
    assert plan.price_credits is not None
    end = boundary(at, plan.interval_unit, plan.interval_count, 1)
    sub = Subscription(
        id=sid,
        user_id=wallet.owner_id,
        user_ref=principal.sub,
        wallet_id=wallet.id,
        plan_code=plan.code,
        plan_version=plan.version,
        status=Status.active,
        anchor_at=at,
        current_period=1,
        current_period_start=at,
        current_period_end=end,
        cancel_at_period_end=False,
        next_plan_code=None,
        next_plan_version=None,
        ended_at=None,
        ended_reason=None,
        created_at=at,
        updated_at=at,
    )
    await repo.insert_subscription(conn, sub)
    await repo.insert_period(
        conn,
        Period(
            subscription_id=sid,
            number=1,
            period_start=at,
            period_end=end,
            plan_code=plan.code,
            plan_version=plan.version,
            price_credits=plan.price_credits,
            status=PeriodStatus.paid,
            attempts=1,
            next_retry_at=None,
            grace_until=at + timedelta(seconds=plan.grace_period_s),
            paid_at=at,
        ),
    )
    await charging.charge_credits(
        conn,
        sub,
        period_number=1,
        credits=plan.price_credits,
        operation_key=charging.period_key(sid, 1),
        kind="period",
        reason=f"subscription {plan.code} period 1",
    )
    return await get(conn, sid)


async def _subscribe_inr(
    conn: AsyncConnection,
    principal: Principal,
    plan: Plan,
    sid: uuid.UUID,
    user_id: uuid.UUID,
    wallet_id: uuid.UUID,
    at: datetime,
    mandate_id: uuid.UUID | None,
) -> Subscription:
    assert plan.price_paise is not None
    if mandate_id is None:
        raise SubscriptionMandateRequired("a plan priced in INR needs mandate_id")
    mandate = await mandates.usable(conn, mandate_id, user_id)
    if mandate is None or mandate.max_amount_paise < plan.price_paise:
        raise SubscriptionMandateRequired(
            "the mandate is not the caller's, not active, or its maximum is below the price",
            price_paise=plan.price_paise,
        )
    sub = Subscription(
        id=sid,
        user_id=user_id,
        user_ref=principal.sub,
        wallet_id=wallet_id,
        plan_code=plan.code,
        plan_version=plan.version,
        status=Status.pending,
        anchor_at=at,
        current_period=1,
        current_period_start=at,
        current_period_end=boundary(at, plan.interval_unit, plan.interval_count, 1),
        cancel_at_period_end=False,
        next_plan_code=None,
        next_plan_version=None,
        ended_at=None,
        ended_reason=None,
        created_at=at,
        updated_at=at,
        mandate_id=mandate_id,
    )
    await repo.insert_subscription(conn, sub)
    # Period 1 is due for its charge now; its bounds move to when it is paid.
    await repo.insert_period(
        conn,
        Period(
            subscription_id=sid,
            number=1,
            period_start=at,
            period_end=sub.current_period_end,
            plan_code=plan.code,
            plan_version=plan.version,
            price_credits=None,
            price_paise=plan.price_paise,
            status=PeriodStatus.pending,
            attempts=0,
            next_retry_at=at,
            grace_until=at + timedelta(seconds=plan.grace_period_s),
            paid_at=None,
        ),
    )
    return await get(conn, sid)


async def get(conn: AsyncConnection, subscription_id: uuid.UUID) -> Subscription:
    sub = await repo.get_subscription(conn, subscription_id)
    if sub is None:
        raise SubscriptionNotFound(f"subscription {subscription_id} does not exist")
    return sub


async def lock(conn: AsyncConnection, subscription_id: uuid.UUID) -> Subscription:
    sub = await repo.get_subscription(conn, subscription_id, lock=True)
    if sub is None:
        raise SubscriptionNotFound(f"subscription {subscription_id} does not exist")
    return sub


async def read(
    conn: AsyncConnection, principal: Principal, subscription_id: uuid.UUID
) -> Subscription:
    sub = await get(conn, subscription_id)
    auth.authorize_read(principal, sub)
    return sub


async def mine(
    conn: AsyncConnection,
    principal: Principal,
    limit: int,
    before: tuple[datetime, uuid.UUID] | None = None,
) -> list[Subscription]:
    """The caller's subscriptions, newest first, those before the cursor's (time, id)."""
    auth.authorize_subscribe(principal)
    user_id = await users.user_id_for(conn, principal.sub)
    return [] if user_id is None else await repo.list_of_user(conn, user_id, limit, before)


async def cancel(
    conn: AsyncConnection,
    principal: Principal,
    subscription_id: uuid.UUID,
    *,
    at_period_end: bool,
    at: datetime | None = None,
) -> Subscription:
    """At period end: stays active (and paid for) until the period ends, never renews.
    Now: ends at once; the unused part of the period is not credited back (the price bought
    the period, as a cancelled subscription's does on most platforms), and a period in
    dunning is voided. Either way `subscription.cancelled` is announced once, now, with
    `ends_at`."""
    at = at or now()
    sub = await lock(conn, subscription_id)
    auth.authorize_cancel(principal, sub)
    if sub.status not in LIVE:
        raise SubscriptionNotActive(f"subscription {sub.id} is {sub.status}")
    plan = await plans.version(conn, sub.plan_code, sub.plan_version)
    # A subscription in dunning has no paid period left to run out: it ends now.
    if at_period_end and sub.status is Status.active:
        if sub.cancel_at_period_end:
            return sub
        sub = await repo.update_subscription(conn, sub.id, cancel_at_period_end=True)
        ends_at = sub.current_period_end
    else:
        sub = await end(conn, sub, at=at, status=Status.cancelled, reason="cancelled")
        ends_at = at
    await charging.announce_cancelled(
        conn,
        sub,
        {"plan_name": plan.name, "ends_at": charging.iso(ends_at)},
    )
    return sub


async def end(
    conn: AsyncConnection, sub: Subscription, *, at: datetime, status: Status, reason: str
) -> Subscription:
    """Ends a locked subscription; its unpaid next period (if any; a pending subscription's
    first) is voided or left unpaid, an INR upgrade waiting for its payment failed."""
    n = sub.current_period if sub.status is Status.pending else sub.current_period + 1
    nxt = await repo.get_period(conn, sub.id, n)
    if nxt is not None and nxt.status in (PeriodStatus.pending, PeriodStatus.past_due):
        await repo.update_period(
            conn,
            sub.id,
            nxt.number,
            status=PeriodStatus.unpaid if status is Status.expired else PeriodStatus.void,
            attempts=nxt.attempts,
            next_retry_at=None,
            paid_at=None,
        )
        raising = await attempts.open_attempt(conn, sub.id, nxt.number) if sub.on_mandate else None
        if raising is not None and raising.status is AttemptStatus.raising:
            # Written, its charge not yet raised (no payment): the renewal job that wrote it
            # finds it failed and raises nothing on the ended subscription (`inr.attach`).
            await attempts.set_attempt(
                conn,
                raising,
                to=AttemptStatus.failed,
                sources=(AttemptStatus.raising,),
                failure=f"subscription ended: {reason}",
            )
    if sub.on_mandate:
        await inr_change.on_ended(conn, sub, reason)
    return await repo.update_subscription(
        conn, sub.id, status=status, ended_at=at, ended_reason=reason
    )


@dataclass(frozen=True)
class Change:
    subscription: Subscription
    direction: str  # "upgrade" (now) or "downgrade" (at the next renewal)
    prorated_credits: int
    # None: an INR upgrade takes effect when its prorated charge is paid (`pending`).
    effective_at: datetime | None
    prorated_paise: int = 0
    pending: PlanChange | None = None


async def change_plan(
    conn: AsyncConnection,
    principal: Principal,
    subscription_id: uuid.UUID,
    *,
    plan_code: str,
    operation_key: str,
    at: datetime | None = None,
    inr_lead_s: int = 3 * 86400,
) -> Change:
    """To a dearer plan: now, charged round-half-up((new - old) * remaining / period)
    credits from the wallet. To a plan of the same or a lower price: at the next renewal,
    nothing charged or credited now (the member keeps what the period paid for).

    An INR subscription's (`inr_change.py`): an upgrade's prorated price is charged on the
    mandate and the new plan takes effect when it is paid; `inr_lead_s` is the renewal's
    lead time (no upgrade within it)."""
    at = at or now()
    sub = await lock(conn, subscription_id)
    auth.authorize_change(principal, sub)
    if sub.status is not Status.active or sub.cancel_at_period_end:
        raise SubscriptionNotActive(f"subscription {sub.id} is not active or is ending")
    if (
        sub.current_period_end <= at
        # (or the renewal's clock ran a little ahead of ours and has priced it already)
        or await repo.get_period(conn, sub.id, sub.current_period + 1) is not None
    ):
        # The paid period is over and its renewal is due or under way: the next period may
        # already be priced (made, not yet charged), and its charge would set the plan back
        # to that price's, undoing a change taken now. Changes wait for the renewal.
        raise PlanChangeRefused("the period has ended and is being renewed; try again shortly")
    if sub.on_mandate:
        await inr_change.check_open(conn, sub)
    current = await plans.version(conn, sub.plan_code, sub.plan_version)
    target = await plans.sellable(conn, plan_code)
    if target.currency is not current.currency:
        raise PlanChangeRefused("a plan change keeps the currency")
    if target.code == current.code:
        raise PlanChangeRefused("the subscription is already on this plan")
    if target.same_interval != current.same_interval:
        raise PlanChangeRefused("a plan change keeps the billing interval")
    if await repo.holds_live(conn, sub.user_id, target.code):
        raise PlanChangeRefused("the member already has a live subscription to that plan")
    if sub.on_mandate:
        done = await inr_change.request(
            conn, sub, current, target, operation_key=operation_key, at=at, lead_s=inr_lead_s
        )
        return Change(
            done.subscription,
            done.direction,
            0,
            done.effective_at,
            prorated_paise=done.prorated_paise,
            pending=done.change,
        )
    assert target.price_credits is not None and current.price_credits is not None
    if target.price_credits <= current.price_credits:
        sub = await repo.update_subscription(
            conn, sub.id, next_plan_code=target.code, next_plan_version=target.version
        )
        return Change(sub, "downgrade", 0, sub.current_period_end)
    credits = proration.upgrade_charge(
        current.price_credits,
        target.price_credits,
        period_start=sub.current_period_start,
        period_end=sub.current_period_end,
        at=at,
    )
    sub = await repo.update_subscription(
        conn,
        sub.id,
        plan_code=target.code,
        plan_version=target.version,
        next_plan_code=None,
        next_plan_version=None,
    )
    if credits > 0:
        await charging.charge_credits(
            conn,
            sub,
            period_number=sub.current_period,
            credits=credits,
            operation_key=charging.upgrade_key(sub.id, operation_key),
            kind="upgrade",
            reason=f"subscription upgrade {current.code} -> {target.code}",
            from_plan=f"{current.code}:{current.version}",
            to_plan=f"{target.code}:{target.version}",
        )
    return Change(sub, "upgrade", credits, at)


async def periods(conn: AsyncConnection, subscription_id: uuid.UUID) -> list[Period]:
    return await repo.periods_of(conn, subscription_id)
