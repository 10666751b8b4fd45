"""A community payee is paid only while its community is active in CommDesk's MongoDB
(DESIGN §10): a suspended community is not settled by any run (the outcome waits, nothing is
posted), a community suspended after its settlement was made is never sent a transfer (the
settlement fails back to payable, nothing reaches Cashfree), and MongoDB away makes runs wait
and transfers hold off, never fail, until it is back, when the payee is paid once.

A stack of these tests' own: its API and the processes these tests stand in for read a
MongoDB-wire server the tests stop and start, without a cache (every look asks it, as once
an entry has expired). No worker runs on it: the tests bring each transfer forward with the
worker's own step (`transfers.process`), so what is sent, and when, is theirs to say."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.db.engine import in_transaction
from commdesk_billing.gateway.errors import CashfreeNotFound
from commdesk_billing.gateway.factory import payouts_client
from commdesk_billing.localmongo import LocalMongo
from commdesk_billing.modules.communities.directory import CommunityDirectory
from commdesk_billing.modules.ledger.verify import verify_ledger
from commdesk_billing.modules.settlements import transfers
from commdesk_billing.modules.settlements.jobs import settle_period
from commdesk_billing.modules.settlements.model import Settlement, SettlementStatus, transfer_id_of
from commdesk_billing.modules.settlements.service import Outcome
from commdesk_billing.security.jwt import Role
from commdesk_billing.stack import free_port
from tests.conftest import auth, new_wallet
from tests.harness.mongo import MongoTarget, communities
from tests.harness.stack import Stack, StackFactory
from tests.modules.settlements.conftest import PAYOUT_STEP_S, TERMS
from tests.modules.settlements.helpers import (
    MadePayee,
    Payouts,
    directory,
    make_payee,
    payable,
    scalar,
    settle_run,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
async def mongo(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalMongo]:
    """The stack's MongoDB, to take away and bring back."""
    async with LocalMongo(tmp_path_factory.mktemp("settle-mongodb"), port=free_port()) as server:
        yield server


@pytest.fixture(scope="module")
async def settle_stack(stack_factory: StackFactory, mongo: LocalMongo) -> Stack:
    """Overrides the package's: the `payouts` controls then drive this stack's sandbox."""
    return await stack_factory(
        worker=False,
        **TERMS,
        mongodb_url=SecretStr(mongo.url),
        community_cache_s=0,
        mongodb_timeout_s=1.0,
    )


@pytest.fixture
async def up(mongo: LocalMongo) -> AsyncIterator[LocalMongo]:
    """MongoDB running at the start of the test, and again after it whatever it did."""
    await mongo.start()
    yield mongo
    await mongo.start()


async def _community(stack: Stack, mongo: LocalMongo, status: str = "active") -> str:
    community = f"c-{uuid.uuid4().hex[:12]}"
    await _set_status(stack, mongo, community, status)
    return community


async def _set_status(stack: Stack, mongo: LocalMongo, community: str, status: str) -> None:
    target = MongoTarget(mongo.url, stack.settings.mongodb_database, mongo)
    async with communities(target) as coll:
        await coll.replace_one(
            {"_id": community},
            {"_id": community, "name": "Chess", "owner_ids": ["o-1"], "status": status},
            upsert=True,
        )


async def _earning_payee(stack: Stack, mongo: LocalMongo) -> MadePayee:
    """A community payee whose payable is earned by a member's spend over the API."""
    community = await _community(stack, mongo)
    spender = f"member-{uuid.uuid4().hex[:8]}"
    await new_wallet(stack.engine, 5000, sub=spender)
    r = await stack.api.post(
        f"/v1/communities/{community}/spends",
        json={"credits": 5000, "reason": "a season's tournaments"},
        headers=auth(stack.token(sub=spender, role=Role.member), uuid.uuid4().hex),
    )
    assert r.status_code == 201, r.text
    payee = await make_payee(stack.engine, stack.settings, community_id=community)
    assert await payable(stack.engine, payee) > TERMS["settlement_minimum_paise"]
    return payee


async def _run(stack: Stack, payee: MadePayee) -> Outcome:
    """A run of one payee up to now (settle_now's), asking a directory of its own."""
    [outcome] = await settle_run(
        stack.engine,
        stack.settings,
        by="t",
        payee_id=payee.id,
        period=f"t:{uuid.uuid4().hex}",
        cut_off=datetime.now(UTC),
    )
    return outcome


async def _settlements_of(stack: Stack, payee: MadePayee) -> int:
    return int(
        await scalar(
            stack.engine, "SELECT count(*) FROM settlements WHERE payee_id = :p", p=payee.id
        )
    )


async def _api_run(stack: Stack, payee: MadePayee) -> dict[str, Any]:
    tok = stack.token(sub="finance-1", role=Role.finance_admin)
    r = await stack.api.post(
        "/v1/settlements/runs",
        json={"payee_id": str(payee.id)},
        headers=auth(tok, uuid.uuid4().hex),
    )
    assert r.status_code == 201, r.text
    [outcome] = r.json()["outcomes"]
    return dict(outcome)


async def _process(
    stack: Stack, communities_: CommunityDirectory, s: Settlement, source: str
) -> SettlementStatus:
    """The worker's step for one settlement message."""
    client = payouts_client(stack.settings)
    try:

        async def work(conn: AsyncConnection) -> SettlementStatus:
            return await transfers.process(
                conn, client, stack.settings, communities_, s.id, source=source
            )

        status: SettlementStatus = await in_transaction(stack.engine, work)
        return status
    finally:
        await client.aclose()


async def _at_cashfree(stack: Stack, transfer_id: str) -> bool:
    client = payouts_client(stack.settings)
    try:
        await client.get_transfer(transfer_id=transfer_id)
    except CashfreeNotFound:
        return False
    finally:
        await client.aclose()
    return True


async def _clean(stack: Stack) -> None:
    report = await verify_ledger(stack.engine)
    assert report.ok, [str(f) for f in report.findings]


async def test_a_suspended_community_is_settled_by_no_run(
    settle_stack: Stack, up: LocalMongo
) -> None:
    stack = settle_stack
    payee = await _earning_payee(stack, up)
    owed = await payable(stack.engine, payee)
    await _set_status(stack, up, payee.partner_id, "suspended")
    async with directory(stack.settings) as communities_:
        # The scheduler's run (next week's: what was earned now is before its cut-off), a
        # run of one payee (settle_now's), and finance's over the API.
        next_week = datetime.now(UTC) + timedelta(days=7)
        assert await settle_period(stack.engine, stack.settings, communities_, now=next_week) == 0
        one = await _run(stack, payee)
        assert (one.waiting, one.settlement) == ("community_suspended", None)
        api = await _api_run(stack, payee)
        assert (api["waiting"], api["created"], api["settlement"]) == (
            "community_suspended",
            False,
            None,
        )
        assert await _settlements_of(stack, payee) == 0
        assert await payable(stack.engine, payee) == owed  # nothing posted

        # A community CommDesk does not know is not paid either.
        target = MongoTarget(up.url, stack.settings.mongodb_database, up)
        async with communities(target) as coll:
            await coll.delete_one({"_id": payee.partner_id})
        gone = await _run(stack, payee)
        assert gone.waiting == "community_not_found"

        # Active again: settled as any payee.
        await _set_status(stack, up, payee.partner_id, "active")
        back = await _run(stack, payee)
        assert back.created, back
    await _clean(stack)


async def test_a_community_suspended_after_its_settlement_is_never_sent_a_transfer(
    settle_stack: Stack, up: LocalMongo, payouts: Payouts
) -> None:
    stack = settle_stack
    payee = await _earning_payee(stack, up)
    owed = await payable(stack.engine, payee)
    o = await _run(stack, payee)
    assert o.created and o.settlement is not None, o
    s = o.settlement
    await _set_status(stack, up, payee.partner_id, "suspended")
    async with directory(stack.settings) as communities_:
        assert await _process(stack, communities_, s, "created") is SettlementStatus.failed
        # A repeated command, the sync or a webhook changes nothing more.
        for source in ("created", "sync", "webhook"):
            assert await _process(stack, communities_, s, source) is SettlementStatus.failed
    row = await scalar(stack.engine, "SELECT failure_code FROM settlements WHERE id = :i", i=s.id)
    assert row == "community_suspended"
    assert await payable(stack.engine, payee) == owed  # the gross is back
    assert await payouts.transfers({transfer_id_of(s.id, 1)}) == []
    assert not await _at_cashfree(stack, transfer_id_of(s.id, 1))
    await _clean(stack)


async def test_mongodb_away_makes_runs_wait_and_transfers_hold_then_pays_once(
    settle_stack: Stack, up: LocalMongo, payouts: Payouts
) -> None:
    stack = settle_stack
    payee = await _earning_payee(stack, up)
    owed = await payable(stack.engine, payee)
    async with directory(stack.settings) as communities_:
        await up.stop()
        waits = await _run(stack, payee)
        assert waits.waiting == "community_directory_unavailable"
        api = await _api_run(stack, payee)  # a 201 with the outcome, never a 5xx
        assert (api["waiting"], api["created"]) == ("community_directory_unavailable", False)
        assert await _settlements_of(stack, payee) == 0
        assert await payable(stack.engine, payee) == owed

        await up.start()
        o = await _run(stack, payee)
        assert o.created and o.settlement is not None, o
        s = o.settlement

        # Away again before its transfer is sent: not sent, nothing changed, not failed.
        await up.stop()
        for source in ("created", "sync"):
            with pytest.raises(transfers.TransferDeferred):
                await _process(stack, communities_, s, source)
        status = await scalar(stack.engine, "SELECT status FROM settlements WHERE id = :i", i=s.id)
        assert status == "pending"
        assert not await _at_cashfree(stack, transfer_id_of(s.id, 1))

        # Back: the next try sends it, and it is paid once.
        await up.start()
        assert await _process(stack, communities_, s, "sync") in (
            SettlementStatus.processing,
            SettlementStatus.paid,
        )
        await payouts.advance(3 * PAYOUT_STEP_S)  # PENDING -> SUCCESS -> COMPLETED
        assert await _process(stack, communities_, s, "sync") is SettlementStatus.paid
        assert await _process(stack, communities_, s, "created") is SettlementStatus.paid
    sent = await payouts.transfers({transfer_id_of(s.id, n) for n in (1, 2, 3)})
    assert [t["transfer_id"] for t in sent] == [transfer_id_of(s.id, 1)]
    attempts = await scalar(
        stack.engine, "SELECT count(*) FROM settlement_transfers WHERE settlement_id = :i", i=s.id
    )
    assert attempts == 1
    await _clean(stack)
