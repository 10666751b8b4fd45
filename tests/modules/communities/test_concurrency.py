"""Three communities, fifty members each, spending at once over many connections, while
two members also buy a pack and one gets a refund (DESIGN §10): every figure adds up, no
deadlock, and the books verify."""

from __future__ import annotations

import asyncio
import random
import uuid

import pytest
from sqlalchemy import text

from commdesk_billing.modules.ledger.verify import verify_ledger
from commdesk_billing.security.jwt import Role
from tests.conftest import new_wallet
from tests.harness.mongo import MongoTarget, communities
from tests.harness.stack import Stack

pytestmark = pytest.mark.slow

MEMBERS, SPENDS_EACH, CREDITS = 50, 4, 7


async def test_three_communities_fifty_members_each_concurrently(
    stack: Stack, mongodb: MongoTarget
) -> None:
    ids = [f"busy-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    async with communities(mongodb) as collection:
        await collection.insert_many(
            [{"_id": c, "name": c, "owner_ids": [], "status": "active"} for c in ids]
        )
    members = [(c, f"m-{c}-{i}") for c in ids for i in range(MEMBERS)]
    for _, sub in members:
        await new_wallet(stack.engine, 100, sub=sub)
    buyers = [members[0][1], members[MEMBERS][1]]  # one in each of two communities
    tokens = {sub: stack.token(sub) for _, sub in members}
    rng = random.Random(13)
    gate = asyncio.Semaphore(40)
    peak = 0

    async def spend(community: str, sub: str, n: int) -> int:
        async with gate:
            r = await stack.api.post(
                f"/v1/communities/{community}/spends",
                json={"credits": CREDITS, "reason": f"tip {n}"},
                headers={
                    "Authorization": f"Bearer {tokens[sub]}",
                    "Idempotency-Key": f"{sub}-{n}",
                },
            )
            assert r.status_code == 201, r.text
            return int(r.json()["community_credits"])

    async def buy_and_refund(sub: str, refund: bool) -> None:
        order = await stack.buy(tokens[sub])
        await stack.pay(order)
        await stack.wait_status(tokens[sub], order["id"], {"CREDITED"}, timeout_s=60)
        if refund:
            r = await stack.refund(order["id"], amount_paise=5_000)
            assert r.status_code == 202, r.text
            await stack.wait_refund(r.json()["id"], {"SUCCESS"}, timeout_s=60)

    async def watch(stop: asyncio.Event) -> None:
        nonlocal peak
        async with stack.engine.connect() as conn:
            while not stop.is_set():
                n = (
                    await conn.execute(
                        text(
                            "SELECT count(*) FROM pg_stat_activity "
                            "WHERE datname = current_database()"
                        )
                    )
                ).scalar_one()
                peak = max(peak, int(n))
                await conn.rollback()  # statistics views are a snapshot per transaction
                await asyncio.sleep(0.05)

    work = [spend(c, sub, n) for c, sub in members for n in range(SPENDS_EACH)]
    rng.shuffle(work)
    stop = asyncio.Event()
    watcher = asyncio.create_task(watch(stop))
    try:
        await asyncio.gather(
            *work, buy_and_refund(buyers[0], False), buy_and_refund(buyers[1], True)
        )
    finally:
        stop.set()
        await watcher
    assert peak >= 20, f"only {peak} connections were in use at once"
    admin = stack.token("finance-busy", role=Role.finance_admin)
    total_gross = 0
    for c in ids:
        e = (
            await stack.api.get(
                f"/v1/communities/{c}/earnings", headers={"Authorization": f"Bearer {admin}"}
            )
        ).json()
        assert e["spends"] == MEMBERS * SPENDS_EACH
        total_gross += e["earned_credits"] + e["fee_credits"]
    assert total_gross == len(members) * SPENDS_EACH * CREDITS
    for _, sub in members:
        w = await stack.wallet(tokens[sub])
        bought = 3200 if sub in buyers else 0
        refunded = 500 + 34 if sub == buyers[1] else 0  # ₹50 of ₹300: 500 + ceil(200/6)
        assert w["available_credits"] == 100 - SPENDS_EACH * CREDITS + bought - refunded, sub
    report = await verify_ledger(stack.engine)
    assert report.ok, report.findings
