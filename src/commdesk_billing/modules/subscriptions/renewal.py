"""Renewal: exactly one charge per period, whatever races or crashes.

For a live subscription whose paid period has ended by `at`:

1. *Period row* (its own transaction): period n + 1 is inserted once — the primary key
   (subscription, number) and UNIQUE (subscription, period_start) make a second maker (a
   racing job, a re-run after a crash) write nothing. Its price is fixed here: the plan the
   member moved to at this renewal (a downgrade), else the latest version of their plan.
2. *Charge* (another transaction, under the subscription's row lock): if the period is due
   for an attempt, the wallet is locked and read; with enough credits the price is held and
   captured under the period's one operation key (`charging.period_key`), the period is
   paid and the subscription moves on to it (`subscription.renewed`). With too few, the
   period is past due: retried at the plan's dunning offsets from the period's start while
   the grace lasts (`subscription.renewal_failed`). Past the grace, the subscription expires
   (`subscription.cancelled`).

A crash between 1 and 2 leaves a pending period that the next run charges; two jobs at once
serialize on the subscription's row, and the second finds the period paid. Even a charge
run twice would find its hold, capture and charge row by key and change nothing.

`at` is a parameter: the scheduler passes the clock, tests pass later times.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import partial

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.config import Settings
from commdesk_billing.db.engine import in_transaction
from commdesk_billing.gateway.subscriptions import SubscriptionsClient
from commdesk_billing.modules.subscriptions import charging, inr, plans
from commdesk_billing.modules.subscriptions import repository as repo
from commdesk_billing.modules.subscriptions import service as subs
from commdesk_billing.modules.subscriptions.model import (
    LIVE,
    Period,
    PeriodStatus,
    Plan,
    Status,
    Subscription,
    boundary,
)
from commdesk_billing.modules.wallet import service as ws

log = structlog.get_logger(__name__)

# A subscription many periods behind (a scheduler down for long) is caught up period by
# period; this bounds one run's work on it.
MAX_STEPS_PER_SUBSCRIPTION = 24


class Outcome(StrEnum):
    renewed = "renewed"
    failed = "failed"
    ended = "ended"
    waiting = "waiting"  # in dunning, next retry later
    nothing = "nothing"  # not due (another run got there first)
    charging = "charging"  # INR: a charge on the mandate is raised or in flight


@dataclass
class RenewalReport:
    renewed: int = 0
    failed: int = 0
    ended: int = 0
    outcomes: dict[str, list[str]] = field(default_factory=dict)

    def add(self, sid: uuid.UUID, outcome: Outcome) -> None:
        if outcome is Outcome.renewed:
            self.renewed += 1
        elif outcome is Outcome.failed:
            self.failed += 1
        elif outcome is Outcome.ended:
            self.ended += 1
        self.outcomes.setdefault(str(sid), []).append(outcome.value)


def next_retry(plan: Plan, period: Period, at: datetime) -> datetime | None:
    """After a failed attempt at `at`, the next one: the first of the plan's dunning times
    (period start + each offset) still ahead, else one last attempt at the grace's end (the
    member was told the plan stays active until then: credits they add after the last
    offset still renew it). None once the grace has run out. Times already past (a
    scheduler that was down) are skipped, not replayed one run and one email each."""
    times = [period.period_start + timedelta(seconds=s) for s in plan.dunning_offsets_s]
    times.append(period.grace_until)
    return next((t for t in times if t > at and t <= period.grace_until), None)


async def _renewal_plan(conn: AsyncConnection, sub: Subscription) -> Plan:
    # A waiting downgrade is skipped if the member has since subscribed to that plan
    # separately (one live subscription per plan): the renewal stays on its own plan.
    if (
        sub.next_plan_code is not None
        and sub.next_plan_version is not None
        and not await repo.holds_live(conn, sub.user_id, sub.next_plan_code)
    ):
        return await plans.version(conn, sub.next_plan_code, sub.next_plan_version)
    return await plans.latest(conn, sub.plan_code)


async def make_period(conn: AsyncConnection, sid: uuid.UUID, at: datetime) -> Outcome | None:
    """Step 1. Returns an outcome when the subscription ended here (cancelled at period
    end) or is not due; None when period n + 1 exists (made now or before)."""
    sub = await subs.lock(conn, sid)
    if sub.status not in LIVE or sub.current_period_end > at:
        return Outcome.nothing
    if sub.cancel_at_period_end:
        # Announced when the member asked; it ends now, at the end of what they paid for.
        await subs.end(
            conn, sub, at=sub.current_period_end, status=Status.cancelled, reason="cancelled"
        )
        return Outcome.ended
    n = sub.current_period + 1
    if await repo.get_period(conn, sid, n) is not None:
        return None
    plan = await _renewal_plan(conn, sub)
    assert plan.price_credits is not None  # an INR subscription renews in `inr.py`
    start = sub.current_period_end
    await repo.insert_period(
        conn,
        Period(
            subscription_id=sid,
            number=n,
            period_start=start,
            period_end=boundary(sub.anchor_at, plan.interval_unit, plan.interval_count, n),
            plan_code=plan.code,
            plan_version=plan.version,
            price_credits=plan.price_credits,
            status=PeriodStatus.pending,
            attempts=0,
            next_retry_at=start,
            grace_until=start + timedelta(seconds=plan.grace_period_s),
            paid_at=None,
        ),
    )
    return None


async def charge_period(conn: AsyncConnection, sid: uuid.UUID, at: datetime) -> Outcome:
    """Step 2: one attempt at period n + 1, if one is due; expiry past the grace."""
    sub = await subs.lock(conn, sid)
    if sub.status not in LIVE or sub.current_period_end > at:
        return Outcome.nothing
    period = await repo.get_period(conn, sid, sub.current_period + 1)
    if period is None or period.status not in (PeriodStatus.pending, PeriodStatus.past_due):
        return Outcome.nothing
    plan = await plans.version(conn, period.plan_code, period.plan_version)
    if period.plan_code != sub.plan_code and await repo.holds_live(
        conn, sub.user_id, period.plan_code
    ):
        # The period is priced on the plan of a waiting downgrade, which the member has
        # since subscribed to on its own: paying it would make a second live subscription
        # to that plan (refused by the unique index on every run, wedging this one). The
        # member has that plan already; this one ends with its paid period, unrenewed.
        held = await plans.version(conn, sub.plan_code, sub.plan_version)
        sub = await subs.end(
            conn, sub, at=sub.current_period_end, status=Status.cancelled, reason="superseded"
        )
        await charging.announce_cancelled(
            conn, sub, {"plan_name": held.name, "ends_at": charging.iso(sub.ended_at)}
        )
        return Outcome.ended
    if period.next_retry_at is not None and period.next_retry_at <= at:
        wallet = await ws.get_wallet(conn, sub.wallet_id, lock=True)
        assert period.price_credits is not None
        if wallet.available_credits >= period.price_credits:
            await _pay(conn, sub, period, plan, at)
            return Outcome.renewed
        attempts = period.attempts + 1
        retry = next_retry(plan, period, at)
        await repo.update_period(
            conn,
            sid,
            period.number,
            status=PeriodStatus.past_due,
            attempts=attempts,
            next_retry_at=retry,
            paid_at=None,
        )
        if sub.status is not Status.past_due:
            sub = await repo.update_subscription(conn, sid, status=Status.past_due)
        if retry is not None:
            await charging.announce_renewal_failed(
                conn,
                sub,
                {
                    "plan_name": plan.name,
                    "attempt": attempts,
                    "next_retry_at": charging.iso(retry),
                    "grace_until": charging.iso(period.grace_until),
                },
            )
            return Outcome.failed
        # The last attempt, at or past the grace's end, failed: it expires below, and
        # `subscription.cancelled` alone tells the member.
        period = await repo.get_period(conn, sid, period.number) or period
    if at >= period.grace_until:
        sub = await subs.end(
            conn, sub, at=period.grace_until, status=Status.expired, reason="unpaid"
        )
        await charging.announce_cancelled(
            conn,
            sub,
            {"plan_name": plan.name, "ends_at": charging.iso(period.grace_until)},
        )
        return Outcome.ended
    return Outcome.waiting


async def _pay(
    conn: AsyncConnection, sub: Subscription, period: Period, plan: Plan, at: datetime
) -> None:
    assert period.price_credits is not None
    await charging.charge_credits(
        conn,
        sub,
        period_number=period.number,
        credits=period.price_credits,
        operation_key=charging.period_key(sub.id, period.number),
        kind="period",
        reason=f"subscription {plan.code} period {period.number}",
    )
    await repo.update_period(
        conn,
        sub.id,
        period.number,
        status=PeriodStatus.paid,
        attempts=period.attempts + 1,
        next_retry_at=None,
        paid_at=at,
    )
    sub = await repo.update_subscription(
        conn,
        sub.id,
        status=Status.active,
        current_period=period.number,
        current_period_start=period.period_start,
        current_period_end=period.period_end,
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
            "period_start": charging.iso(period.period_start),
            "period_end": charging.iso(period.period_end),
            "price_credits": period.price_credits,
        },
    )


@dataclass(frozen=True)
class Inr:
    """What INR renewals need: the settings (lead time, GST) and a Subscriptions client."""

    settings: Settings
    client: SubscriptionsClient


_FROM_STEP = {
    inr.Step.raise_charge: Outcome.charging,
    inr.Step.raise_change: Outcome.charging,
    inr.Step.charging: Outcome.charging,
    inr.Step.failed: Outcome.failed,
    inr.Step.ended: Outcome.ended,
    inr.Step.waiting: Outcome.waiting,
    inr.Step.nothing: Outcome.nothing,
}


async def renew_one(
    engine: AsyncEngine, sid: uuid.UUID, at: datetime, inr_run: Inr | None = None
) -> Outcome:
    """Both steps for one subscription, each in its own transaction; an INR one's step
    (`inr.renew_one`) when the run can reach Cashfree."""
    sub = await in_transaction(engine, lambda c: subs.get(c, sid))
    if sub.on_mandate:
        if inr_run is None:
            return Outcome.nothing
        return _FROM_STEP[await inr.renew_one(engine, inr_run.client, inr_run.settings, sid, at)]
    made = await in_transaction(engine, partial(make_period, sid=sid, at=at))
    if made is not None:
        return made
    return await in_transaction(engine, partial(charge_period, sid=sid, at=at))


async def renew_due(
    engine: AsyncEngine,
    *,
    at: datetime | None = None,
    batch: int = 200,
    only: list[uuid.UUID] | None = None,
    inr_run: Inr | None = None,
) -> RenewalReport:
    """The scheduler's job: every live subscription whose period ended by `at`, caught up
    period by period (one transaction per step, so one member never holds up the rest).
    `only` limits the run to those subscriptions (a test's own, in a shared database)."""
    at = at or datetime.now(UTC)
    report = RenewalReport()
    seen: list[uuid.UUID] = []
    while True:
        ids = await in_transaction(
            engine,
            lambda c: repo.due_subscriptions(
                c,
                at,
                batch,
                exclude=seen,
                only=only,
                inr_lead_s=inr_run.settings.subscription_inr_lead_s if inr_run else 0,
            ),
        )
        for sid in ids:
            seen.append(sid)
            for step in range(MAX_STEPS_PER_SUBSCRIPTION):
                try:
                    outcome = await renew_one(engine, sid, at, inr_run)
                except Exception as exc:  # one subscription must not stop the others
                    log.error(
                        "subscriptions.renewal.failed",
                        subscription_id=str(sid),
                        error=str(exc)[:300],
                    )
                    break
                if outcome is Outcome.nothing and step:
                    break  # caught up: the last period paid runs past `at`
                report.add(sid, outcome)
                if outcome is not Outcome.renewed:
                    break
        if len(ids) < batch:
            return report
