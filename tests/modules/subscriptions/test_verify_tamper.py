"""`ledger verify`'s subscription checks find books that were tampered with."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from commdesk_billing.db.engine import in_transaction
from commdesk_billing.modules.ledger.verify import verify_ledger
from commdesk_billing.modules.subscriptions import invariants, plans
from commdesk_billing.modules.subscriptions import service as subs
from commdesk_billing.modules.subscriptions.jobs import renew_subscriptions
from commdesk_billing.modules.subscriptions.model import Currency, IntervalUnit
from commdesk_billing.security.jwt import Principal, Role
from tests.conftest import new_wallet


async def test_verify_finds_a_changed_price_an_overlap_and_a_moved_period(
    scratch_engine: AsyncEngine,
) -> None:
    sub_id = f"member-{uuid.uuid4().hex}"
    await new_wallet(scratch_engine, 1000, sub=sub_id)
    plan = await in_transaction(
        scratch_engine,
        lambda c: plans.add_version(
            c,
            code="tamper",
            name="Tamper",
            currency=Currency.credits,
            price_credits=100,
            price_paise=None,
            interval_unit=IntervalUnit.month,
            interval_count=1,
            grace_period_s=86400,
            dunning_offsets_s=[],
            active=True,
            created_by="test",
        ),
    )
    who = Principal(sub=sub_id, role=Role.member, scopes=frozenset())
    sub = await in_transaction(
        scratch_engine,
        lambda c: subs.subscribe(c, who, plan_code=plan.code, operation_key="tamper-1"),
    )
    clean = await verify_ledger(scratch_engine, checks=invariants.CHECKS)
    assert clean.ok, [str(f) for f in clean.findings]
    assert clean.stats["subscription_charges"] == 1

    async with scratch_engine.begin() as conn:
        # The period now says it cost 90: its one charge of 100 no longer matches.
        await conn.execute(
            text("UPDATE subscription_periods SET price_credits = 90 WHERE subscription_id = :s"),
            {"s": sub.id},
        )
        # A second "paid" period overlapping the first, with no charge behind it.
        await conn.execute(
            text("""INSERT INTO subscription_periods
                      (subscription_id, number, period_start, period_end, plan_code,
                       plan_version, price_credits, status, grace_until, paid_at)
                    VALUES (:s, 2, :a, :b, 'tamper', 1, 100, 'paid', :b, :b)"""),
            {
                "s": sub.id,
                "a": sub.current_period_end - timedelta(days=1),
                "b": sub.current_period_end + timedelta(days=20),
            },
        )
        # The subscription claims period 2 without moving its bounds.
        await conn.execute(
            text("UPDATE subscriptions SET current_period = 2 WHERE id = :s"), {"s": sub.id}
        )
    found = await verify_ledger(scratch_engine, checks=invariants.CHECKS)
    assert sorted((f.check, f.subject) for f in found.findings) == [
        ("subscription_current_period", f"subscription {sub.id}"),
        ("subscription_period_charge", f"subscription {sub.id} period 1"),
        ("subscription_period_charge", f"subscription {sub.id} period 2"),
        ("subscription_periods_overlap", f"subscription {sub.id}"),
    ]


async def test_verify_finds_a_paid_period_the_subscription_never_moved_on_to(
    scratch_engine: AsyncEngine,
) -> None:
    """Period 2 charged and paid, but the subscription put back on period 1 (its bounds
    too): every other check is satisfied, yet the member paid for a period they do not
    have and the renewal job would select it forever."""
    sub_id = f"member-{uuid.uuid4().hex}"
    await new_wallet(scratch_engine, 1000, sub=sub_id)
    plan = await in_transaction(
        scratch_engine,
        lambda c: plans.add_version(
            c,
            code="ahead",
            name="Ahead",
            currency=Currency.credits,
            price_credits=100,
            price_paise=None,
            interval_unit=IntervalUnit.day,
            interval_count=1,
            grace_period_s=0,
            dunning_offsets_s=[],
            active=True,
            created_by="test",
        ),
    )
    who = Principal(sub=sub_id, role=Role.member, scopes=frozenset())
    sub = await in_transaction(
        scratch_engine,
        lambda c: subs.subscribe(c, who, plan_code=plan.code, operation_key="ahead-1"),
    )
    report = await renew_subscriptions(scratch_engine, only=[sub.id], at=sub.current_period_end)
    assert report.outcomes[str(sub.id)] == ["renewed"]
    clean = await verify_ledger(scratch_engine, checks=invariants.CHECKS)
    assert clean.ok, [str(f) for f in clean.findings]

    async with scratch_engine.begin() as conn:
        await conn.execute(
            text("""UPDATE subscriptions SET current_period = 1, current_period_start = :a,
                           current_period_end = :b WHERE id = :s"""),
            {"s": sub.id, "a": sub.current_period_start, "b": sub.current_period_end},
        )
    found = await verify_ledger(scratch_engine, checks=invariants.CHECKS)
    assert [(f.check, f.subject) for f in found.findings] == [
        ("subscription_period_ahead", f"subscription {sub.id} period 2"),
    ]
