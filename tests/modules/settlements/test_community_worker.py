"""The worker's side of a community payee's transfer while MongoDB is away: the
`settlements.processing` message finds the directory unanswering, sends nothing, changes
nothing and is retried (never failed, never refused as a business error); once MongoDB is
back the settlement is sent by the message's retries or the status sync, and paid once.

The stack's API and worker read a MongoDB-wire server the test stops and starts (no cache).
The settlement itself is made by a run asking the suite's MongoDB, where the community is
active too: a run while the worker's MongoDB is away, so its transfer command meets it so."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr

from commdesk_billing.config import Settings
from commdesk_billing.localmongo import LocalMongo
from commdesk_billing.modules.ledger.verify import verify_ledger
from commdesk_billing.modules.settlements.jobs import sync_open_settlements
from commdesk_billing.modules.settlements.model import transfer_id_of
from commdesk_billing.security.jwt import Role
from commdesk_billing.stack import free_port
from commdesk_billing.telemetry.metrics import QUEUE_RETRIED
from tests.conftest import auth, new_wallet
from tests.harness.mongo import MongoTarget, communities
from tests.harness.stack import Stack, StackFactory
from tests.modules.settlements.conftest import PAYOUT_STEP_S, TERMS
from tests.modules.settlements.helpers import (
    Payouts,
    make_payee,
    payable,
    scalar,
    settle_run,
    wait_status,
)

pytestmark = pytest.mark.slow

QUEUE = "settlements.processing"


@pytest.fixture(scope="module")
async def mongo(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalMongo]:
    async with LocalMongo(tmp_path_factory.mktemp("worker-mongodb"), port=free_port()) as server:
        yield server


@pytest.fixture(scope="module")
async def settle_stack(stack_factory: StackFactory, mongo: LocalMongo) -> Stack:
    """Overrides the package's (so `payouts` drives this stack's sandbox): with a worker."""
    return await stack_factory(
        **TERMS, mongodb_url=SecretStr(mongo.url), community_cache_s=0, mongodb_timeout_s=1.0
    )


def _retried() -> float:
    value: float = QUEUE_RETRIED.labels(QUEUE)._value.get()  # type: ignore[attr-defined]
    return value


async def _put(url: str, database: str, community: str) -> None:
    async with communities(MongoTarget(url, database, None)) as coll:
        await coll.replace_one(
            {"_id": community},
            {"_id": community, "name": "Chess", "owner_ids": ["o-1"], "status": "active"},
            upsert=True,
        )


async def test_a_transfer_meeting_mongodb_away_is_retried_then_paid_once(
    settle_stack: Stack, mongo: LocalMongo, payouts: Payouts, settings: Settings
) -> None:
    stack = settle_stack
    await mongo.start()
    community = f"c-{uuid.uuid4().hex[:12]}"
    # Active in the worker's MongoDB and in the suite's (which the run below asks).
    await _put(mongo.url, stack.settings.mongodb_database, community)
    await _put(settings.mongodb_url.get_secret_value(), settings.mongodb_database, community)
    spender = f"member-{uuid.uuid4().hex[:8]}"
    await new_wallet(stack.engine, 5000, sub=spender)
    r = await stack.api.post(
        f"/v1/communities/{community}/spends",
        json={"credits": 5000, "reason": "a season's tournaments"},
        headers=auth(stack.token(sub=spender, role=Role.member), uuid.uuid4().hex),
    )
    assert r.status_code == 201, r.text
    payee = await make_payee(stack.engine, stack.settings, community_id=community)
    owed = await payable(stack.engine, payee)

    await mongo.stop()
    try:
        before = _retried()
        run_settings = stack.settings.model_copy(
            update={
                "mongodb_url": settings.mongodb_url,
                "mongodb_database": settings.mongodb_database,
            }
        )
        [o] = await settle_run(
            stack.engine,
            run_settings,
            by="t",
            payee_id=payee.id,
            period=f"t:{uuid.uuid4().hex}",
            cut_off=datetime.now(UTC),
        )
        assert o.created and o.settlement is not None, o
        s = o.settlement
        # The worker has taken the command, found MongoDB away and handed it to a retry tier.
        deadline = time.monotonic() + 60
        while _retried() <= before:
            assert time.monotonic() < deadline, "the transfer command was never retried"
            await asyncio.sleep(0.1)
        status = await scalar(stack.engine, "SELECT status FROM settlements WHERE id = :i", i=s.id)
        assert status == "pending"
        sent = await scalar(
            stack.engine,
            "SELECT count(*) FROM settlement_transfers WHERE settlement_id = :i "
            "AND status <> 'new'",
            i=s.id,
        )
        assert sent == 0
        assert await payouts.transfers({transfer_id_of(s.id, 1)}) == []
    finally:
        await mongo.start()

    # Back: the retries (or, once they are used up, the sync) send it.
    deadline = time.monotonic() + 60
    while await payouts.transfers({transfer_id_of(s.id, 1)}) == []:
        assert time.monotonic() < deadline, "never sent after MongoDB came back"
        await sync_open_settlements(
            stack.engine, stack.settings, now=datetime.now(UTC) + timedelta(minutes=5)
        )
        await asyncio.sleep(0.3)
    await payouts.advance(3 * PAYOUT_STEP_S)  # PENDING -> SUCCESS -> COMPLETED
    await wait_status(stack.engine, s.id, {"paid"}, timeout_s=60)
    sent_all = await payouts.transfers({transfer_id_of(s.id, n) for n in (1, 2, 3)})
    assert [t["transfer_id"] for t in sent_all] == [transfer_id_of(s.id, 1)]
    assert await payable(stack.engine, payee) == owed - s.gross_paise
    report = await verify_ledger(stack.engine)
    assert report.ok, [str(f) for f in report.findings]
