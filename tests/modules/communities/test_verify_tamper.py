"""The community checks of `ledger verify`, each shown failing on a deliberate tamper."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from commdesk_billing.db.engine import in_transaction
from commdesk_billing.modules.communities import spends
from commdesk_billing.modules.communities.directory import Community, CommunityStatus
from commdesk_billing.modules.ledger.model import CommunityAccounts, House
from commdesk_billing.modules.ledger.verify import verify_ledger
from tests.conftest import new_wallet
from tests.harness.databases import tamper


async def _tamper(url: str, sql: str, *args: object) -> None:
    await tamper(url, sql, *args, tables=("ledger_entries",))


_SPEND_JOURNAL = "(SELECT journal_id FROM community_spends WHERE id = $1)"
CASES = {
    # One credit moved from the community's earnings to the platform's fee.
    "fee credits": (
        f"UPDATE ledger_entries SET amount = amount + CASE WHEN account_id = $2 THEN -1 "
        f"ELSE 1 END WHERE journal_id = {_SPEND_JOURNAL} AND account_id IN ($2, $3)",
        lambda a: (House.FEE_CREDITS, a.earnings),
        {"community_spend", "community_payable"},
    ),
    # Five paise moved from what the community is owed to the platform's fee revenue.
    "payable paise": (
        f"UPDATE ledger_entries SET amount = amount + CASE WHEN account_id = $2 THEN -5 "
        f"ELSE 5 END WHERE journal_id = {_SPEND_JOURNAL} AND account_id IN ($2, $3)",
        lambda a: (House.PLATFORM_FEE_REVENUE, a.payable),
        {"community_spend", "community_payable"},
    ),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_each_community_check_catches_its_tamper(
    case: str, scratch_database_url: str, scratch_engine: AsyncEngine
) -> None:
    community = Community(f"t-{uuid.uuid4().hex[:8]}", "Tampered", (), CommunityStatus.active)
    wallet = await new_wallet(scratch_engine, 3000)
    spend = await in_transaction(
        scratch_engine,
        lambda c: spends.spend(
            c,
            community=community,
            wallet=wallet,
            user_external_id="m",
            credits=100,
            reason="ticket",
            reference=None,
            operation_key=f"s:{uuid.uuid4()}",
            actor="m",
            default_fee_bps=1000,
        ),
    )
    assert (await verify_ledger(scratch_engine)).ok
    sql, accounts, expected = CASES[case]
    await _tamper(
        scratch_database_url, sql, spend.id, *accounts(CommunityAccounts.of(community.id))
    )
    report = await verify_ledger(scratch_engine)
    assert {f.check for f in report.findings} == expected, report.findings
