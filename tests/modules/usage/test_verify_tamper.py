"""The usage checks of `ledger verify`, each shown failing on a deliberate tamper.

A batch is recorded by the module's own entry point in a scratch database (one event paid
in part and owing the rest under an overdraft price, then the debt repaid in part); the
books are clean; then one record is changed behind the application's back, as only a
superuser could, and the named checks catch it.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from commdesk_billing.db.engine import in_transaction
from commdesk_billing.modules.ledger.verify import verify_ledger
from commdesk_billing.modules.usage import debts, invariants, metering, pricebook
from commdesk_billing.modules.usage.model import Policy, Tier
from commdesk_billing.modules.wallet.model import LotSource
from tests.conftest import grant_bought, new_wallet
from tests.harness.databases import tamper

_TABLES = ("usage_metering", "usage_aggregates", "usage_debts", "usage_debt_repayments")
_EVENT = "(SELECT id FROM usage_metering WHERE event_id = 'paid')"
CASES = {
    # The event says it debited more than its wallet line did (its figures still add up).
    "event debit raised": (
        "UPDATE usage_metering SET debited_credits = debited_credits + 1,"
        " credits = credits + 1 WHERE event_id = 'paid'",
        {"usage_debit", "usage_aggregate", "usage_rating"},
    ),
    # An event vanishes: its wallet line names nothing, its month no longer adds up.
    "event deleted": (
        f"DELETE FROM usage_metering WHERE id = {_EVENT}",
        {"usage_debit", "usage_aggregate", "usage_debt"},
    ),
    # The month's aggregate loses a unit.
    "aggregate units": (
        "UPDATE usage_aggregates SET units = units - 1 WHERE granularity = 'month'",
        {"usage_aggregate"},
    ),
    # A month's credits no longer what its milli-credits round to (both rows kept equal).
    "aggregate credits": (
        "UPDATE usage_aggregates SET credits = credits + 1, debited_credits = debited_credits + 1",
        {"usage_aggregate"},
    ),
    # The debt forgets part of what was owed.
    "debt incurred": (
        "UPDATE usage_debts SET incurred_credits = incurred_credits - 1",
        {"usage_debt"},
    ),
    # A repayment's row says more than its wallet line debited.
    "repayment raised": (
        "UPDATE usage_debt_repayments SET credits = credits + 1",
        {"usage_debit", "usage_debt"},
    ),
    # An event rated below its price (30 000 milli-credits for 20 units at 1 500), its
    # periods changed to match and still rounding to the same credits: only re-rating the
    # event from its version's tiers shows it.
    "event under-rated": (
        "UPDATE usage_metering SET millicredits = millicredits - 400 WHERE event_id = 'paid';"
        " UPDATE usage_aggregates SET millicredits = millicredits - 400",
        {"usage_rating"},
    ),
    # An event recorded as owing past its price's bound.
    "debt past the bound": (
        "UPDATE usage_metering SET debt_after_credits = 1000 WHERE event_id = 'paid'",
        {"usage_debt"},
    ),
}


async def _books(engine: AsyncEngine) -> None:
    meter = "m.tamper"
    now = datetime.now(UTC)
    await in_transaction(
        engine,
        lambda c: pricebook.add_version(
            c,
            meter=meter,
            effective_from=now - timedelta(days=1),
            tiers=[Tier(None, 1500)],
            on_insufficient=Policy.overdraft,
            overdraft_limit_credits=100,
            reason="tamper",
            by="test",
        ),
    )
    wallet = await new_wallet(engine, 10)
    events = [metering.UsageEvent("paid", meter, 20, now - timedelta(minutes=1), wallet.id)]
    results = await in_transaction(
        engine, lambda c: metering.record_batch(c, source="svc", events=events, now=now)
    )
    assert [(r.credits, r.debited_credits, r.debt_credits) for r in results] == [(30, 10, 20)]
    await in_transaction(
        engine,
        lambda c: grant_bought(
            c,
            wallet_id=wallet.id,
            credits=5,
            source=LotSource.promotional,
            idempotency_key=f"g-{uuid.uuid4()}",
            reason="top-up",
        ),
    )
    assert await in_transaction(engine, lambda c: debts.clear(c, wallet.id, "test")) == 5


@pytest.mark.parametrize("case", sorted(CASES))
async def test_each_tamper_is_caught_by_its_check(
    case: str, scratch_engine: AsyncEngine, scratch_database_url: str
) -> None:
    await _books(scratch_engine)
    clean = await verify_ledger(scratch_engine, checks=list(invariants.CHECKS))
    assert clean.findings == []
    sql, expected = CASES[case]
    await tamper(scratch_database_url, sql, tables=_TABLES)
    report = await verify_ledger(scratch_engine, checks=list(invariants.CHECKS))
    assert {f.check for f in report.findings} == expected, [str(f) for f in report.findings]
