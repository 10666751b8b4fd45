"""A batch's footprint in PostgreSQL's shared lock table.

The lock table is shared by the whole server and sized max_locks_per_transaction times
max_connections (6 400 slots with the defaults): a batch that took a heavyweight lock per
event (1 000) would let a handful of concurrent batches exhaust it, and then every
transaction on the server that needs a lock — a payment's, a refund's — fails with "out of
shared memory". A batch of 1 000 new events must hold a small, bounded number of locks."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from commdesk_billing.db.engine import make_engine
from commdesk_billing.modules.usage import metering
from commdesk_billing.modules.usage.metering import UsageEvent
from commdesk_billing.modules.wallet.model import Wallet
from tests.modules.usage.conftest import Usage, event

MakeWallet = Callable[..., Awaitable[Wallet]]


async def _locks_held(usage: Usage, events: list[UsageEvent]) -> int:
    """The locks a batch's transaction holds just before it would commit (rolled back)."""
    async with usage.engine.connect() as conn, conn.begin() as tx:
        results = await metering.record_batch(
            conn, source=usage.source, events=events, now=datetime.now(UTC)
        )
        assert {r.status for r in results} == {"accepted"}
        held = (
            await conn.execute(text("SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid()"))
        ).scalar_one()
        await tx.rollback()
    return int(held)


async def test_a_full_batch_holds_no_more_locks_than_one_event(
    usage: Usage, make_wallet: MakeWallet
) -> None:
    wallet = await make_wallet(10_000)
    meter = usage.meter()
    await usage.price(meter)
    at = datetime.now(UTC) - timedelta(minutes=1)
    one = await _locks_held(usage, [UsageEvent("lf-one", meter, 1, at, wallet_id=wallet.id)])
    full = await _locks_held(
        usage,
        [
            UsageEvent(f"lf{i}", meter, 1, at, wallet_id=wallet.id)
            for i in range(metering.MAX_BATCH)
        ],
    )
    # A larger batch may touch a few more relations (a fresh-clone run saw 60 and 76), never
    # a lock per event (the bug: 82 and 1 065).
    assert full - one < metering.MAX_BATCH // 20, (
        f"one event: {one} locks; {metering.MAX_BATCH} events: {full}"
    )


async def test_an_event_id_raced_for_two_wallets_waits_and_is_a_conflict(
    usage: Usage, make_wallet: MakeWallet
) -> None:
    """The first batch holds its uncommitted row; the second (another wallet, so no lock in
    common) waits on the unique key, then runs again and finds the row: one charge."""
    a, b = await make_wallet(100), await make_wallet(100)
    meter = usage.meter()
    await usage.price(meter)
    at = datetime.now(UTC) - timedelta(minutes=1)
    holder = make_engine(usage.settings, pool_size=1)
    async with holder.connect() as conn:
        tx = await conn.begin()
        (first,) = await metering.record_batch(
            conn,
            source=usage.source,
            events=[UsageEvent("raced", meter, 3, at, wallet_id=a.id)],
            now=datetime.now(UTC),
        )
        assert first.status == "accepted"
        second = asyncio.create_task(usage.report([event("raced", meter, 3, b.id, at)]))
        # Until the second batch waits on the first's row (a lock wait, not a timer).
        for _ in range(500):
            # pg_stat_activity is read once per transaction unless the snapshot is dropped.
            await conn.execute(text("SELECT pg_stat_clear_snapshot()"))
            waiting = (
                await conn.execute(
                    text("""SELECT count(*) FROM pg_stat_activity
                             WHERE datname = current_database() AND wait_event_type = 'Lock'
                               AND query LIKE 'INSERT INTO usage_metering%'""")
                )
            ).scalar_one()
            if waiting:
                break
            await asyncio.sleep(0.01)
        assert waiting == 1
        await tx.commit()
    await holder.dispose()
    r = await second
    assert r.status_code == 200, r.text
    assert r.json()["results"][0]["status"] == "conflict"
    assert (await usage.figures(a.id)).available == 97
    assert (await usage.figures(b.id)).available == 100
