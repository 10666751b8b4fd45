"""The crossing: the debit, hold or community spend that takes a wallet's available credits
from at or above its level to below it writes one request (and its command in the outbox);
the debits below it write none; never two in flight for one wallet."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.config import Settings
from commdesk_billing.db.engine import in_transaction
from commdesk_billing.modules.communities import spends
from commdesk_billing.modules.communities.directory import Community, CommunityStatus
from commdesk_billing.modules.wallet import service as ws
from commdesk_billing.modules.wallet.debits import Debit
from tests.modules.autorecharge.conftest import (
    debit,
    decisions,
    enable,
    member,
    outbox_count,
    recharges,
    top_up,
)


async def test_the_crossing_debit_writes_one_request_and_the_ones_below_none(
    engine: AsyncEngine, settings: Settings
) -> None:
    m = await member(engine, 300)
    out = await enable(engine, settings, m)
    assert (out.enabled, out.threshold, out.trigger_level) == (True, 200, 200)
    await debit(engine, m.wallet.id, 100)  # 300 -> 200: still at the level
    assert await recharges(engine, m.wallet.id) == []
    await debit(engine, m.wallet.id, 1)  # 200 -> 199: across
    for _ in range(5):  # 199 -> 149: below, never again
        await debit(engine, m.wallet.id, 10)
    found = await recharges(engine, m.wallet.id)
    assert [r.status for r in found] == ["requested"]
    assert await outbox_count(engine, "auto_recharge.requested", m.wallet.id) == 1
    # One low-balance notice for the crossing, none after: one copy for each queue that
    # reads it (notifications.billing, and events out's webhooks.outbound).
    assert await outbox_count(engine, "wallet.low_balance", m.wallet.id) == 2
    assert await decisions(engine, m.wallet.id) == [("fired", None)]


async def test_a_wallet_without_auto_recharge_writes_nothing(
    engine: AsyncEngine, settings: Settings
) -> None:
    off = await member(engine, 300)
    await debit(engine, off.wallet.id, 250)
    assert await recharges(engine, off.wallet.id) == []
    assert await decisions(engine, off.wallet.id) == []


async def test_turning_it_on_below_the_level_asks_once(
    engine: AsyncEngine, settings: Settings
) -> None:
    below = await member(engine, 150)
    await enable(engine, settings, below)  # 150 < 200: no debit will cross; this does
    await enable(engine, settings, below)  # the same PUT again: not a second switch-on
    await debit(engine, below.wallet.id, 100)  # below already: no crossing
    assert [r.status for r in await recharges(engine, below.wallet.id)] == ["requested"]
    assert await outbox_count(engine, "auto_recharge.requested", below.wallet.id) == 1
    assert await decisions(engine, below.wallet.id) == [("fired", "enabled_below_level")]


async def test_a_second_crossing_while_one_is_in_flight_writes_no_second_request(
    engine: AsyncEngine, settings: Settings
) -> None:
    m = await member(engine, 250)
    await enable(engine, settings, m)
    await debit(engine, m.wallet.id, 100)  # across: requested
    await top_up(engine, m.wallet.id, 200)  # 350
    await debit(engine, m.wallet.id, 200)  # across again, the first still in flight
    assert [r.status for r in await recharges(engine, m.wallet.id)] == ["requested"]
    assert await decisions(engine, m.wallet.id) == [("fired", None), ("skipped", "in_flight")]
    assert await outbox_count(engine, "auto_recharge.requested", m.wallet.id) == 1


async def test_a_batch_that_crosses_crosses_once(engine: AsyncEngine, settings: Settings) -> None:
    m = await member(engine, 260)
    await enable(engine, settings, m)
    batch = [Debit(m.wallet.id, 20, f"batch:{uuid.uuid4()}", "usage") for _ in range(5)]
    outcomes = await in_transaction(engine, lambda c: ws.consume_credits_many(c, batch))
    assert all(o.error is None for o in outcomes)
    assert len(await recharges(engine, m.wallet.id)) == 1


async def test_a_hold_crosses_and_its_capture_adds_nothing(
    engine: AsyncEngine, settings: Settings
) -> None:
    m = await member(engine, 300)
    await enable(engine, settings, m)
    held = await in_transaction(
        engine,
        lambda c: ws.lock_credits(
            c,
            wallet_id=m.wallet.id,
            credits=150,
            idempotency_key=f"hold:{uuid.uuid4()}",
            reason="call",
            ttl_s=600,
        ),
    )
    assert held.wallet.available_credits == 150
    assert len(await recharges(engine, m.wallet.id)) == 1
    assert held.hold is not None
    hold_id = held.hold.id
    captured = await in_transaction(
        engine,
        lambda c: ws.capture_hold(
            c, hold_id=hold_id, idempotency_key=f"cap:{uuid.uuid4()}", credits=100
        ),
    )
    assert captured.wallet.available_credits == 200  # the 50 not captured came back
    assert len(await recharges(engine, m.wallet.id)) == 1


async def test_a_community_spend_crosses(engine: AsyncEngine, settings: Settings) -> None:
    m = await member(engine, 500)
    await enable(engine, settings, m)
    community = Community(f"ar-{uuid.uuid4().hex[:8]}", "Club", (), CommunityStatus.active)

    async def spend(conn: AsyncConnection) -> object:
        return await spends.spend(
            conn,
            community=community,
            wallet=m.wallet,
            user_external_id=m.sub,
            credits=400,
            reason="ticket",
            reference=None,
            operation_key=f"spend:{uuid.uuid4()}",
            actor=m.sub,
            default_fee_bps=1000,
        )

    await in_transaction(engine, spend)
    assert [r.status for r in await recharges(engine, m.wallet.id)] == ["requested"]


@pytest.mark.slow
async def test_fifty_concurrent_debits_across_the_level_make_exactly_one_request(
    engine: AsyncEngine, settings: Settings
) -> None:
    m = await member(engine, 700)
    await enable(engine, settings, m, threshold=500)
    inside = peak = 0
    start = asyncio.Event()

    async def one(i: int) -> None:
        nonlocal inside, peak

        async def work(conn: AsyncConnection) -> None:
            nonlocal inside, peak
            inside += 1
            peak = max(peak, inside)
            try:
                await ws.consume_credits(
                    conn,
                    wallet_id=m.wallet.id,
                    credits=10,
                    idempotency_key=f"race:{m.wallet.id}:{i}",
                    reason="usage",
                )
            finally:
                inside -= 1

        await start.wait()
        await in_transaction(engine, work)

    tasks = [asyncio.create_task(one(i)) for i in range(50)]
    start.set()
    await asyncio.gather(*tasks)
    assert peak >= 5, peak  # they really raced for the wallet's row
    wallet = await in_transaction(engine, lambda c: ws.get_wallet(c, m.wallet.id))
    assert wallet.available_credits == 200
    assert len(await recharges(engine, m.wallet.id)) == 1
    assert await outbox_count(engine, "auto_recharge.requested", m.wallet.id) == 1


async def test_credits_expiring_across_the_level_write_one_request(
    engine: AsyncEngine, settings: Settings
) -> None:
    """Expiry takes available credits down as a debit does: a wallet it takes across its
    level would otherwise never be asked for (no debit crosses from below)."""
    from datetime import UTC, datetime, timedelta

    from commdesk_billing.modules.wallet.expiry import expire_wallet
    from commdesk_billing.modules.wallet.model import LotSource
    from tests.conftest import grant_bought

    m = await member(engine, 100)
    await in_transaction(
        engine,
        lambda c: grant_bought(
            c,
            wallet_id=m.wallet.id,
            credits=500,
            source=LotSource.promotional,
            idempotency_key=f"ar-expiring:{uuid.uuid4()}",
            reason="promotion",
            paid_paise=0,
            taxable_paise=0,
            expires_at=datetime.now(UTC) - timedelta(days=1),
        ),
    )
    await enable(engine, settings, m)  # 600 available, level 200
    assert await in_transaction(engine, lambda c: expire_wallet(c, m.wallet.id)) == 500
    assert [r.status for r in await recharges(engine, m.wallet.id)] == ["requested"]
    assert await decisions(engine, m.wallet.id) == [("fired", None)]
    assert await outbox_count(engine, "auto_recharge.requested", m.wallet.id) == 1


async def test_a_request_whose_message_was_lost_is_sent_again_once_it_is_stale(
    engine: AsyncEngine, settings: Settings
) -> None:
    """A request left `requested` (or `opening`) — its message dead-lettered after Cashfree
    stayed down, or a crash with the order opened and the recharge not marked — keeps the
    wallet's one in-flight place for ever: nothing else would ask for it again."""
    from datetime import UTC, datetime, timedelta

    from commdesk_billing.modules.autorecharge import outcomes

    m = await member(engine, 250)
    await enable(engine, settings, m)
    await debit(engine, m.wallet.id, 100)  # across: requested
    assert await outbox_count(engine, "auto_recharge.requested", m.wallet.id) == 1
    assert await outcomes.resend_stale(engine) == 0  # not stale yet
    later = datetime.now(UTC) + timedelta(hours=1)
    assert await outcomes.resend_stale(engine, now=later) >= 1
    assert await outbox_count(engine, "auto_recharge.requested", m.wallet.id) == 2
    await outcomes.resend_stale(engine, now=later)  # once per stale period
    assert await outbox_count(engine, "auto_recharge.requested", m.wallet.id) == 2
    assert [r.status for r in await recharges(engine, m.wallet.id)] == ["requested"]
