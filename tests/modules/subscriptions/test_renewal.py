"""Renewal by the scheduler's job, with time passed in: three renewals with a failure and
a recovery, races, a crash between the period row and the charge, grace expiry."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from functools import partial

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from commdesk_billing.config import Settings
from commdesk_billing.db.engine import in_transaction
from commdesk_billing.modules.subscriptions import renewal
from commdesk_billing.modules.subscriptions.jobs import renew_subscriptions
from commdesk_billing.modules.subscriptions.model import IntervalUnit, boundary
from tests.modules.subscriptions.helpers import (
    charges,
    events,
    get,
    grant,
    make_plan,
    member,
    periods,
    subscribe,
    ts,
    wallet,
)

S = timedelta(seconds=1)
DAY = timedelta(days=1)


async def test_three_renewals_with_a_failure_and_recovery(
    client: httpx.AsyncClient, settings: Settings, engine: AsyncEngine
) -> None:
    plan = await make_plan(
        client,
        settings,
        name="Team",
        price_credits=100,
        grace_period_seconds=7 * 86400,
        dunning_offsets_seconds=[86400, 3 * 86400],
    )
    who = await member(engine, 250)
    out = await subscribe(client, settings, who, plan["code"])
    sid = uuid.UUID(out["id"])
    anchor = ts(out["current_period_start"])

    def end(n: int) -> timedelta:
        return boundary(anchor, IntervalUnit.month, 1, n) - anchor

    # Period 2: paid (250 - 100 - 100 = 50 left).
    first = await renew_subscriptions(engine, only=[sid], at=anchor + end(1) + S)
    assert first.outcomes[str(sid)] == ["renewed"]
    assert (await wallet(engine, who.wallet.id)).available_credits == 50

    # Period 3: too few credits. Past due, in grace; retried a day after its start.
    start3 = anchor + end(2)
    failed = await renew_subscriptions(engine, only=[sid], at=start3 + S)
    assert failed.outcomes[str(sid)] == ["failed"]
    sub = await get(engine, sid)
    assert (sub.status.value, sub.current_period) == ("past_due", 2)
    p3 = (await periods(engine, sid))[2]
    assert (p3.status.value, p3.attempts, p3.next_retry_at) == ("past_due", 1, start3 + DAY)
    assert p3.grace_until == start3 + 7 * DAY

    # Before the retry is due nothing is tried, even with credits back.
    await grant(engine, who.wallet.id, 150)
    early = await renew_subscriptions(engine, only=[sid], at=start3 + DAY - S)
    assert early.outcomes[str(sid)] == ["waiting"]
    assert (await wallet(engine, who.wallet.id)).available_credits == 200

    # The retry succeeds: recovered, the period keeps its own start and end.
    recovered = await renew_subscriptions(engine, only=[sid], at=start3 + DAY)
    assert recovered.outcomes[str(sid)] == ["renewed"]
    sub = await get(engine, sid)
    assert (sub.status.value, sub.current_period) == ("active", 3)
    assert (sub.current_period_start, sub.current_period_end) == (start3, anchor + end(3))

    # Period 4: paid.
    fourth = await renew_subscriptions(engine, only=[sid], at=anchor + end(3))
    assert fourth.outcomes[str(sid)] == ["renewed"]
    assert (await wallet(engine, who.wallet.id)).available_credits == 0
    assert [(p.number, p.status.value, p.attempts) for p in await periods(engine, sid)] == [
        (1, "paid", 1),
        (2, "paid", 1),
        (3, "paid", 2),
        (4, "paid", 1),
    ]
    assert await charges(engine, sid) == [(n, "period", 100) for n in (1, 2, 3, 4)]

    said = await events(engine, sid)
    assert [t for t, _ in said] == [
        "subscription.renewed",
        "subscription.renewal_failed",
        "subscription.renewed",
        "subscription.renewed",
    ]
    assert said[0][1] == {
        "subscription_id": str(sid),
        "user_id": str(who.wallet.owner_id),
        "user_ref": who.sub,
        "plan_name": "Team",
        "period_start": (anchor + end(1)).isoformat(),
        "period_end": (anchor + end(2)).isoformat(),
        "price_credits": 100,
    }
    assert said[1][1] == {
        "subscription_id": str(sid),
        "user_id": str(who.wallet.owner_id),
        "user_ref": who.sub,
        "plan_name": "Team",
        "attempt": 1,
        "next_retry_at": (start3 + DAY).isoformat(),
        "grace_until": (start3 + 7 * DAY).isoformat(),
    }
    # Nothing is due any more at that time: a run again changes nothing.
    again = await renew_subscriptions(engine, only=[sid], at=anchor + end(3))
    assert str(sid) not in again.outcomes


async def test_racing_renewal_jobs_charge_each_period_once(
    client: httpx.AsyncClient, settings: Settings, engine: AsyncEngine
) -> None:
    plan = await make_plan(client, settings, price_credits=40, interval_unit="week")
    members = [await member(engine, 1000) for _ in range(3)]
    subs = [await subscribe(client, settings, m, plan["code"]) for m in members]
    latest = max(ts(s["current_period_start"]) for s in subs)
    # Three periods have ended for all: eight jobs at once catch them up.
    at = latest + timedelta(weeks=3) + S
    ids = [uuid.UUID(s["id"]) for s in subs]
    reports = await asyncio.gather(
        *(renew_subscriptions(engine, only=ids, at=at) for _ in range(8))
    )
    assert sum(r.renewed for r in reports) == 3 * 3
    for m, s in zip(members, subs, strict=True):
        sid = uuid.UUID(s["id"])
        assert await charges(engine, sid) == [(n, "period", 40) for n in (1, 2, 3, 4)]
        assert (await wallet(engine, m.wallet.id)).available_credits == 1000 - 4 * 40
        assert (await get(engine, sid)).current_period == 4
        assert [t for t, _ in await events(engine, sid)] == ["subscription.renewed"] * 3


async def test_a_crash_between_the_period_row_and_the_charge_charges_once(
    client: httpx.AsyncClient, settings: Settings, engine: AsyncEngine
) -> None:
    plan = await make_plan(client, settings, price_credits=70, interval_unit="day")
    who = await member(engine, 500)
    out = await subscribe(client, settings, who, plan["code"])
    sid = uuid.UUID(out["id"])
    at = ts(out["current_period_end"]) + S

    # The first transaction ran; the process died before the second.
    made = await in_transaction(engine, partial(renewal.make_period, sid=sid, at=at))
    assert made is None
    assert [(p.number, p.status.value) for p in await periods(engine, sid)] == [
        (1, "paid"),
        (2, "pending"),
    ]
    assert await charges(engine, sid) == [(1, "period", 70)]
    # Made again (a second job): still one period 2.
    await in_transaction(engine, partial(renewal.make_period, sid=sid, at=at))
    assert len(await periods(engine, sid)) == 2

    # The next run charges it, once; the charge step run again finds it paid.
    report = await renew_subscriptions(engine, only=[sid], at=at)
    assert report.outcomes[str(sid)] == ["renewed"]
    outcome = await in_transaction(engine, partial(renewal.charge_period, sid=sid, at=at))
    assert outcome is renewal.Outcome.nothing
    assert await charges(engine, sid) == [(1, "period", 70), (2, "period", 70)]
    assert (await wallet(engine, who.wallet.id)).available_credits == 500 - 140


async def test_past_the_grace_the_subscription_expires(
    client: httpx.AsyncClient, settings: Settings, engine: AsyncEngine
) -> None:
    plan = await make_plan(
        client,
        settings,
        name="Solo",
        price_credits=100,
        interval_unit="week",
        grace_period_seconds=3 * 86400,
        dunning_offsets_seconds=[86400],
    )
    who = await member(engine, 100)
    out = await subscribe(client, settings, who, plan["code"])
    sid = uuid.UUID(out["id"])
    start2 = ts(out["current_period_end"])

    assert (await renew_subscriptions(engine, only=[sid], at=start2)).outcomes[str(sid)] == [
        "failed"
    ]
    assert (await renew_subscriptions(engine, only=[sid], at=start2 + DAY)).outcomes[str(sid)] == [
        "failed"
    ]
    assert (await renew_subscriptions(engine, only=[sid], at=start2 + 2 * DAY)).outcomes[
        str(sid)
    ] == ["waiting"]
    ended = await renew_subscriptions(engine, only=[sid], at=start2 + 3 * DAY)
    assert ended.outcomes[str(sid)] == ["ended"]
    sub = await get(engine, sid)
    assert (sub.status.value, sub.ended_at, sub.ended_reason) == (
        "expired",
        start2 + 3 * DAY,
        "unpaid",
    )
    assert [(p.number, p.status.value, p.attempts) for p in await periods(engine, sid)] == [
        (1, "paid", 1),
        (2, "unpaid", 3),
    ]
    said = await events(engine, sid)
    # After the plan's one offset, a last attempt at the grace's end; its failure ends it.
    assert [(t, d.get("attempt"), d.get("next_retry_at")) for t, d in said] == [
        ("subscription.renewal_failed", 1, (start2 + DAY).isoformat()),
        ("subscription.renewal_failed", 2, (start2 + 3 * DAY).isoformat()),
        ("subscription.cancelled", None, None),
    ]
    assert said[2][1] == {
        "subscription_id": str(sid),
        "user_id": str(who.wallet.owner_id),
        "user_ref": who.sub,
        "plan_name": "Solo",
        "ends_at": (start2 + 3 * DAY).isoformat(),
    }
    # Ended: credits arriving later buy nothing, later runs do nothing.
    await grant(engine, who.wallet.id, 500)
    later = await renew_subscriptions(engine, only=[sid], at=start2 + 30 * DAY)
    assert str(sid) not in later.outcomes
    assert await charges(engine, sid) == [(1, "period", 100)]
    assert (await wallet(engine, who.wallet.id)).available_credits == 500


async def test_charges_racing_on_one_period_pay_it_once(
    client: httpx.AsyncClient, settings: Settings, engine: AsyncEngine
) -> None:
    """Four charge steps on one pending period, all started while a fifth transaction holds
    the subscription's row, so all four really wait together; then one pays, three find it
    paid."""
    plan = await make_plan(client, settings, price_credits=25, interval_unit="day")
    who = await member(engine, 100)
    out = await subscribe(client, settings, who, plan["code"])
    sid = uuid.UUID(out["id"])
    at = ts(out["current_period_end"])
    assert await in_transaction(engine, partial(renewal.make_period, sid=sid, at=at)) is None

    async with engine.connect() as blocker:
        await blocker.begin()
        await blocker.execute(
            text("SELECT 1 FROM subscriptions WHERE id = :s FOR UPDATE"), {"s": sid}
        )
        racers = [
            asyncio.create_task(
                in_transaction(engine, partial(renewal.charge_period, sid=sid, at=at))
            )
            for _ in range(4)
        ]
        waiting = 0
        for _ in range(500):
            waiting = await _waiting_on_subscriptions(engine)
            if waiting == 4:
                break
            await asyncio.sleep(0.01)
        assert waiting == 4  # the peak: all four inside their transactions at once
        await blocker.commit()
    outcomes = sorted(o.value for o in await asyncio.gather(*racers))
    assert outcomes == ["nothing", "nothing", "nothing", "renewed"]
    assert await charges(engine, sid) == [(1, "period", 25), (2, "period", 25)]
    assert (await wallet(engine, who.wallet.id)).available_credits == 50


async def _waiting_on_subscriptions(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int(
            (
                await conn.execute(
                    text(
                        """SELECT count(*) FROM pg_stat_activity
                             WHERE datname = current_database() AND wait_event_type = 'Lock'
                               AND query LIKE '%FROM subscriptions WHERE id = :id FOR UPDATE%'
                            """.replace(":id", "$1")
                    )
                )
            ).scalar_one()
        )


async def test_the_scheduler_job_renews_every_due_subscription(
    scratch_engine: AsyncEngine, settings: Settings
) -> None:
    """The job as the scheduler has it (`wiring.jobs`), over a database of its own: every
    due subscription, none named."""
    from commdesk_billing import wiring
    from commdesk_billing.modules.subscriptions import plans
    from commdesk_billing.modules.subscriptions import service as subs_service
    from commdesk_billing.modules.subscriptions.model import Currency
    from commdesk_billing.security.jwt import Principal, Role
    from tests.conftest import new_wallet

    job = {j.name: j for j in wiring.jobs(settings, scratch_engine, None)}["renew_subscriptions"]  # type: ignore[arg-type]
    assert job.every_s == settings.subscription_renew_every_s
    plan = await in_transaction(
        scratch_engine,
        lambda c: plans.add_version(
            c,
            code="daily",
            name="Daily",
            currency=Currency.credits,
            price_credits=5,
            price_paise=None,
            interval_unit=IntervalUnit.day,
            interval_count=1,
            grace_period_s=0,
            dunning_offsets_s=[],
            active=True,
            created_by="test",
        ),
    )
    made = []
    for n in range(3):
        sub = f"member-{uuid.uuid4().hex}"
        await new_wallet(scratch_engine, 100, sub=sub)
        who = Principal(sub=sub, role=Role.member, scopes=frozenset())
        made.append(
            await in_transaction(
                scratch_engine,
                lambda c, who=who, n=n: subs_service.subscribe(
                    c, who, plan_code=plan.code, operation_key=f"job-{n}"
                ),
            )
        )
    assert (await job.run()) == renewal.RenewalReport()  # now: nothing is due yet
    at = max(s.current_period_end for s in made) + DAY
    report = await renew_subscriptions(scratch_engine, at=at)
    assert (report.renewed, report.failed, report.ended) == (6, 0, 0)
    for s in made:
        assert (await get(scratch_engine, s.id)).current_period == 3
