"""The scheduler's run: each payee payable now is settled once per period, up to the
period's start, however often the job looks; and a receivable (a refund after a
settlement) is never paid but netted from what the payee earns next. In a scratch database:
no worker, so the transfer commands wait in its outbox."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from commdesk_billing.config import Settings
from commdesk_billing.db.engine import in_transaction
from commdesk_billing.modules.communities.directory import CommunityDirectory
from commdesk_billing.modules.ledger.verify import verify_ledger
from commdesk_billing.modules.partners import service as partners
from commdesk_billing.modules.settlements.jobs import settle_period
from commdesk_billing.modules.settlements.service import Outcome, period_of
from tests.modules.settlements.conftest import TERMS
from tests.modules.settlements.helpers import (
    earn,
    make_payee,
    payable,
    scalar,
    settle_run,
)


async def test_a_period_settles_each_payee_once_up_to_its_start(
    scratch_engine: AsyncEngine, payee_settings: Settings, communities: CommunityDirectory
) -> None:
    settings = Settings(**TERMS)  # type: ignore[arg-type]
    paid = await make_payee(scratch_engine, payee_settings)
    # A changed account, still in its cooling-off at next week's run.
    cooling = await make_payee(scratch_engine, payee_settings, cooling_off=timedelta(days=30))
    small = await make_payee(scratch_engine, payee_settings)
    await earn(scratch_engine, paid, 50_000)
    await earn(scratch_engine, cooling, 50_000)
    await earn(scratch_engine, small, 5_000)
    # This week's run settles what was earned before this week: nothing yet.
    assert await settle_period(scratch_engine, settings, communities) == 0
    next_week = datetime.now(UTC) + timedelta(days=7)
    assert await settle_period(scratch_engine, settings, communities, now=next_week) == 1
    assert (
        await settle_period(scratch_engine, settings, communities, now=next_week) == 0
    )  # once a period
    period, cut_off = period_of(settings, next_week)
    row = await scalar(
        scratch_engine,
        "SELECT period || ' ' || cut_off::text || ' ' || net_paise FROM settlements "
        "WHERE payee_id = :p",
        p=paid.id,
    )
    assert row is not None and row.startswith(f"{period} ")
    assert await scalar(
        scratch_engine,
        "SELECT cut_off = :c FROM settlements WHERE payee_id = :p",
        p=paid.id,
        c=cut_off,
    )
    # The transfer waits in the outbox for a worker, after the settlement's commit.
    assert (
        await scalar(
            scratch_engine,
            "SELECT count(*) FROM outbox WHERE message_type = 'settlement.transfer'",
        )
        == 1
    )
    assert await payable(scratch_engine, paid) == 5_000  # the reserve
    assert await payable(scratch_engine, cooling) == 50_000
    assert await payable(scratch_engine, small) == 5_000
    report = await verify_ledger(scratch_engine)
    assert report.ok, [str(f) for f in report.findings]


async def test_a_receivable_is_never_paid_and_is_netted_from_what_comes_next(
    scratch_engine: AsyncEngine, payee_settings: Settings
) -> None:
    settings = Settings(**TERMS)  # type: ignore[arg-type]
    payee = await make_payee(scratch_engine, payee_settings)
    payment_id = await earn(scratch_engine, payee, 50_000)

    async def run() -> Outcome:
        [o] = await settle_run(
            scratch_engine,
            settings,
            by="t",
            payee_id=payee.id,
            period=f"t:{uuid.uuid4().hex}",
            cut_off=datetime.now(UTC),
        )
        return o

    first = await run()
    assert first.settlement is not None and first.settlement.gross_paise == 45_000
    # The purchase is refunded after the settlement: its whole share is taken back.
    await in_transaction(
        scratch_engine,
        lambda c: partners.on_refund_succeeded(c, uuid.uuid4(), payment_id, 100_000),
    )
    assert await payable(scratch_engine, payee) == 5_000 - 50_000  # a receivable
    owed = await run()
    assert (owed.created, owed.waiting, owed.available_paise) == (
        False,
        "nothing_payable",
        -50_000,
    )
    await earn(scratch_engine, payee, 100_000)
    # 100 000 earned - 45 000 owed back - 5 000 reserve held = 50 000 available.
    later = await run()
    assert later.settlement is not None
    s = later.settlement
    assert (s.payable_paise, s.reserves_held_paise, s.reserve_paise, s.gross_paise) == (
        55_000,
        5_000,
        5_000,
        45_000,
    )
    assert (s.tds_paise, s.tcs_paise, s.fee_paise, s.net_paise) == (450, 225, 118, 44_207)
    report = await verify_ledger(scratch_engine)
    assert report.ok, [str(f) for f in report.findings]


async def test_two_schedulers_racing_over_every_payee_make_one_settlement_each(
    scratch_engine: AsyncEngine, payee_settings: Settings, communities: CommunityDirectory
) -> None:
    settings = Settings(**TERMS)  # type: ignore[arg-type]
    payees = [await make_payee(scratch_engine, payee_settings) for _ in range(3)]
    for p in payees:
        await earn(scratch_engine, p, 40_000)
    next_week = datetime.now(UTC) + timedelta(days=7)
    made = await asyncio.gather(
        settle_period(scratch_engine, settings, communities, now=next_week),
        settle_period(scratch_engine, settings, communities, now=next_week),
    )
    assert sum(made) == 3
    assert await scalar(scratch_engine, "SELECT count(*) FROM settlements") == 3
    report = await verify_ledger(scratch_engine)
    assert report.ok, [str(f) for f in report.findings]


async def test_what_was_taken_back_after_the_cut_off_is_never_paid_out(
    scratch_engine: AsyncEngine, payee_settings: Settings
) -> None:
    """A share earned before the cut-off but refunded after it (and before the run) is
    already owed back: paying it would only make a receivable of our own making. A run
    never pays more than the payable holds when it runs."""
    settings = Settings(**TERMS)  # type: ignore[arg-type]
    payee = await make_payee(scratch_engine, payee_settings)
    payment_id = await earn(scratch_engine, payee, 50_000)
    cut_off = datetime.now(UTC)
    await asyncio.sleep(0.01)  # the refund is after the cut-off

    async def run() -> Outcome:
        [o] = await settle_run(
            scratch_engine,
            settings,
            by="t",
            payee_id=payee.id,
            period=f"t:{uuid.uuid4().hex}",
            cut_off=cut_off,
        )
        return o

    await in_transaction(
        scratch_engine,
        lambda c: partners.on_refund_succeeded(c, uuid.uuid4(), payment_id, 60_000),
    )
    assert await payable(scratch_engine, payee) == 20_000  # 30 000 of the share taken back
    o = await run()
    assert o.settlement is not None
    # What the payable holds now (20 000), not what it held at the cut-off (50 000).
    assert (o.settlement.payable_paise, o.settlement.gross_paise) == (20_000, 18_000)
    assert await payable(scratch_engine, payee) == 2_000  # the reserve; never a receivable
    await in_transaction(
        scratch_engine,
        lambda c: partners.on_refund_succeeded(c, uuid.uuid4(), payment_id, 40_000),
    )
    # Earned after the cut-off is still not paid before its own period, not even to cover
    # what was taken back: 50 000 - 30 000 - 20 000 - 18 000 settled - 2 000 held.
    await earn(scratch_engine, payee, 30_000)
    o = await run()
    assert (o.waiting, o.available_paise) == ("nothing_payable", -20_000)
    report = await verify_ledger(scratch_engine)
    assert report.ok, [str(f) for f in report.findings]
