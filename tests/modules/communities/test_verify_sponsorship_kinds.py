"""The communities' payable check leaves sponsorship journals to the sponsorships' checks, but
only where sponsorships touch a community: its payable (in paise). A journal that only calls
itself a sponsorship's and moves a community's earnings (credits, which no sponsorship
touches) is still the communities' to catch."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.db.engine import in_transaction
from commdesk_billing.modules.communities import spends
from commdesk_billing.modules.communities.directory import Community, CommunityStatus
from commdesk_billing.modules.ledger.journals import post_journal
from commdesk_billing.modules.ledger.model import CommunityAccounts, House, Journal, Ledger, Leg
from commdesk_billing.modules.ledger.verify import verify_ledger
from tests.conftest import new_wallet


async def test_earnings_moved_by_a_journal_named_a_sponsorships_are_caught(
    scratch_engine: AsyncEngine,
) -> None:
    community = Community(f"t-{uuid.uuid4().hex[:8]}", "Tampered", (), CommunityStatus.active)
    wallet = await new_wallet(scratch_engine, 3000)
    await in_transaction(
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
    earnings = CommunityAccounts.of(community.id).earnings
    # Five of the platform's fee credits handed to the community, under a sponsorship kind.
    bogus = Journal(
        idempotency_key=f"bogus:{uuid.uuid4()}",
        kind="sponsorship.funded",
        legs=(Leg(House.FEE_CREDITS, Ledger.CREDITS, 5), Leg(earnings, Ledger.CREDITS, -5)),
        created_at=datetime.now(UTC),
    )

    async def post(conn: AsyncConnection) -> bool:
        return await post_journal(conn, bogus)

    assert await in_transaction(scratch_engine, post)
    report = await verify_ledger(scratch_engine)
    assert "community_payable" in {f.check for f in report.findings}, report.findings
