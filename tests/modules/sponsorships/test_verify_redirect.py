"""The sponsorship checks against a tamper that redirects a funded sponsorship before any of
its milestones is released: to another community (whose payable the application then
credits in good faith), or to another sponsor (who may then release and read it). The rows
and journals written after the tamper agree with each other; only the sponsorship's funding
(its payment and funding journal) still says whose it was."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.db.engine import in_transaction
from commdesk_billing.modules.communities.directory import Community, CommunityStatus
from commdesk_billing.modules.ledger.verify import verify_ledger
from commdesk_billing.modules.sponsorships import invariants, service
from commdesk_billing.modules.wallet import service as ws
from commdesk_billing.security.jwt import Principal, Role
from tests.harness.databases import tamper
from tests.modules.sponsorships.test_verify_tamper import _TABLES, _paid

FINANCE = Principal(sub="fin", role=Role.finance_admin, scopes=frozenset())


async def _release_first(conn: AsyncConnection, sid: uuid.UUID) -> None:
    s = await service.require(conn, sid)
    community = Community(s.community_id, "C", ("owner",), CommunityStatus.active)
    owner = Principal(sub="owner", role=Role.member, scopes=frozenset())
    await service.deliver(conn, owner, community, sid, 1)
    await service.release(conn, FINANCE, sid, 1)


async def _someone_else(conn: AsyncConnection) -> uuid.UUID:
    wallet = await ws.get_or_create_user_wallet(conn, f"sponsor-{uuid.uuid4().hex[:8]}")
    return wallet.owner_id


@pytest.mark.parametrize("column", ["community_id", "sponsor_user_id"])
async def test_a_sponsorship_redirected_before_its_release_is_caught(
    column: str, scratch_database_url: str, scratch_engine: AsyncEngine
) -> None:
    cid = f"c-{uuid.uuid4().hex[:8]}"
    sid = await in_transaction(scratch_engine, lambda c: _paid(c, cid))
    clean = await verify_ledger(scratch_engine)
    assert clean.ok, [str(f) for f in clean.findings]
    value: object = f"c-{uuid.uuid4().hex[:8]}"
    if column == "sponsor_user_id":
        value = await in_transaction(scratch_engine, _someone_else)
    await tamper(
        scratch_database_url,
        f"UPDATE sponsorships SET {column} = $2 WHERE id = $1",
        sid,
        value,
        tables=_TABLES,
    )
    await in_transaction(scratch_engine, lambda c: _release_first(c, sid))
    report = await verify_ledger(scratch_engine, checks=list(invariants.CHECKS))
    assert {f.check for f in report.findings} == {"sponsorship_funding"}, report.findings
