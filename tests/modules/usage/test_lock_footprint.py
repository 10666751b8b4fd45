"""A batch's footprint in PostgreSQL's shared lock table.

The lock table is shared by the whole server and sized max_locks_per_transaction ×
max_connections (6 400 slots with the defaults): a batch that took a heavyweight lock per
event (1 000) would let a handful of concurrent batches exhaust it, and then every
transaction on the server that needs a lock — a payment's, a refund's — fails with "out of
shared memory". A batch of 1 000 new events must hold a small, bounded number of locks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from commdesk_billing.modules.usage import metering
from commdesk_billing.modules.usage.metering import UsageEvent
from commdesk_billing.modules.wallet.model import Wallet
from tests.modules.usage.conftest import Usage

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
    assert full - one < 10, f"one event: {one} locks; {metering.MAX_BATCH} events: {full}"
