"""Many debits in one transaction: per-debit outcomes, FIFO across the batch, no deadlocks."""

from __future__ import annotations

import asyncio
import random
import uuid

from sqlalchemy.ext.asyncio import AsyncEngine

from commdesk_billing.db.engine import in_transaction
from commdesk_billing.errors import (
    IdempotencyMismatch,
    InsufficientCredits,
    InvalidAmount,
    NotFound,
)
from commdesk_billing.modules.wallet import service as ws
from commdesk_billing.modules.wallet.debits import Debit
from tests.conftest import new_wallet


async def test_a_batch_gives_each_debit_its_own_outcome(engine: AsyncEngine) -> None:
    a = await new_wallet(engine, 100)
    b = await new_wallet(engine, 30)
    await in_transaction(
        engine,
        lambda c: ws.consume_credits(
            c, wallet_id=b.id, credits=5, idempotency_key=f"before:{b.id}", reason="earlier"
        ),
    )
    batch = [
        Debit(a.id, 60, f"a1:{a.id}", "one"),
        Debit(b.id, 10, f"b1:{b.id}", "two"),
        Debit(a.id, 50, f"a2:{a.id}", "too much after a1"),
        Debit(a.id, 40, f"a3:{a.id}", "fits"),
        Debit(b.id, 10, f"b1:{b.id}", "same key again"),
        Debit(b.id, 11, f"b1:{b.id}", "same key, other amount"),
        Debit(b.id, 5, f"before:{b.id}", "ran in an earlier transaction"),
        Debit(uuid.uuid4(), 1, "nowhere", "unknown wallet"),
        Debit(a.id, 0, f"zero:{a.id}", "not an amount"),
    ]
    out = await in_transaction(engine, lambda c: ws.consume_credits_many(c, batch))
    kinds = [
        type(o.error).__name__ if o.error else ("replay" if o.result.replayed else "ok")
        for o in out
    ]  # type: ignore[union-attr]
    assert kinds == [
        "ok",
        "ok",
        InsufficientCredits.__name__,
        "ok",
        "replay",
        IdempotencyMismatch.__name__,
        "replay",
        NotFound.__name__,
        InvalidAmount.__name__,
    ]
    lines = [o.result.line for o in out if o.result and not o.result.replayed]
    assert [(t.balance_before, t.balance_after) for t in lines] == [(100, 40), (25, 15), (40, 0)]
    assert out[4].result.line == out[1].result.line  # type: ignore[union-attr]
    for wallet_id, expected in ((a.id, 0), (b.id, 15)):
        w = await in_transaction(engine, lambda c, w=wallet_id: ws.get_wallet(c, w))
        assert w.available_credits == expected
        report = await in_transaction(engine, lambda c, w=wallet_id: ws.sync_balance(c, w))
        assert report.consistent, report.drift


async def test_overlapping_batches_in_any_order_never_deadlock(engine: AsyncEngine) -> None:
    wallets = [await new_wallet(engine, 10_000) for _ in range(6)]

    async def batch(seed: int) -> int:
        rng = random.Random(seed)
        picks = [rng.choice(wallets) for _ in range(12)]
        debits = [Debit(w.id, 3, f"ov:{seed}:{i}:{w.id}", "overlap") for i, w in enumerate(picks)]
        out = await in_transaction(engine, lambda c: ws.consume_credits_many(c, debits))
        assert all(o.error is None for o in out)
        return len(out)

    done = await asyncio.wait_for(asyncio.gather(*(batch(s) for s in range(40))), timeout=60)
    assert sum(done) == 480
    total = 0
    for w in wallets:
        report = await in_transaction(engine, lambda c, w=w: ws.sync_balance(c, w.id))
        assert report.consistent, report.drift
        total += report.row_available
    assert total == 6 * 10_000 - 480 * 3
