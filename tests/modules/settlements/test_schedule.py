"""The scheduler's run: each payee payable now is settled once per period, up to the
period's start, however often the job looks (in a scratch database: no worker, so the
transfer commands wait in its outbox)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from commdesk_billing.config import Settings
from commdesk_billing.modules.ledger.verify import verify_ledger
from commdesk_billing.modules.settlements.jobs import settle_period
from commdesk_billing.modules.settlements.service import period_of
from tests.modules.settlements.conftest import TERMS
from tests.modules.settlements.helpers import earn, make_payee, payable, scalar


async def test_a_period_settles_each_payee_once_up_to_its_start(
    scratch_engine: AsyncEngine,
) -> None:
    settings = Settings(**TERMS)  # type: ignore[arg-type]
    paid = await make_payee(scratch_engine)
    cooling = await make_payee(scratch_engine, blocked_until=datetime.now(UTC) + timedelta(days=30))
    small = await make_payee(scratch_engine)
    await earn(scratch_engine, paid, 50_000)
    await earn(scratch_engine, cooling, 50_000)
    await earn(scratch_engine, small, 5_000)
    # This week's run settles what was earned before this week: nothing yet.
    assert await settle_period(scratch_engine, settings) == 0
    next_week = datetime.now(UTC) + timedelta(days=7)
    assert await settle_period(scratch_engine, settings, now=next_week) == 1
    assert await settle_period(scratch_engine, settings, now=next_week) == 0  # once a period
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
