"""`grant_credits_many`: a purchase's lot and its bonus lot under one lock, written in one
batch, are exactly what two `grant_credits` calls write; a repeat replays each, a key used
for something else is refused, and it takes three statements."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.db.engine import in_transaction
from commdesk_billing.errors import IdempotencyMismatch
from commdesk_billing.modules.ledger import postings
from commdesk_billing.modules.ledger.journals import post_journal
from commdesk_billing.modules.wallet import service as ws
from commdesk_billing.modules.wallet.model import LotSource
from tests.conftest import new_wallet


def _grants(tag: str) -> list[ws.Grant]:
    return [
        ws.Grant(
            credits=3000,
            source=LotSource.purchase,
            idempotency_key=f"{tag}:purchase",
            reason="purchase pack_300 (order x)",
            paid_paise=30000,
            taxable_paise=25424,
            source_ref="ref",
            metadata={"order_id": "x"},
        ),
        ws.Grant(
            credits=200,
            source=LotSource.bonus,
            idempotency_key=f"{tag}:bonus",
            reason="bonus for pack_300 (order x)",
            source_ref="ref",
            metadata={"order_id": "x"},
        ),
    ]


async def _captured(c: AsyncConnection) -> None:
    """The money behind the purchase lot, as the crediting books it."""
    await post_journal(
        c,
        postings.payment_captured(
            payment_id=uuid.uuid4(), amount=30000, taxable=25424, gst=4576, at=datetime.now(UTC)
        ),
    )


async def _written(engine: AsyncEngine, wallet_id: uuid.UUID) -> dict[str, Any]:
    async with engine.connect() as c:
        wallet = (
            await c.execute(
                text("""SELECT available_credits, lifetime_purchased_credits, statement_seq
                          FROM wallets WHERE id = :w"""),
                {"w": wallet_id},
            )
        ).one()
        lines = (
            await c.execute(
                text("""SELECT seq, transaction_type, credits, balance_before, balance_after,
                               source, source_id, metadata,
                               split_part(idempotency_key, ':', 2) AS key
                          FROM wallet_transactions WHERE wallet_id = :w ORDER BY seq"""),
                {"w": wallet_id},
            )
        ).all()
        lots = (
            await c.execute(
                text("""SELECT source, credits_granted, credits_remaining, paid_paise,
                               taxable_paise, source_ref
                          FROM credit_lots WHERE wallet_id = :w ORDER BY source"""),
                {"w": wallet_id},
            )
        ).all()
    return {"wallet": tuple(wallet), "lines": [tuple(r) for r in lines], "lots": lots}


async def test_one_batch_writes_what_two_grants_write(engine: AsyncEngine) -> None:
    one_by_one, batched = await new_wallet(engine), await new_wallet(engine)

    async def apart(c: AsyncConnection) -> None:
        for g in _grants(f"apart-{uuid.uuid4().hex}"):
            await ws.grant_credits(
                c,
                wallet_id=one_by_one.id,
                credits=g.credits,
                source=g.source,
                idempotency_key=g.idempotency_key,
                reason=g.reason,
                paid_paise=g.paid_paise,
                taxable_paise=g.taxable_paise,
                source_ref=g.source_ref,
                metadata=g.metadata,
            )
        await _captured(c)

    async def together(c: AsyncConnection) -> list[ws.OperationResult]:
        results = await ws.grant_credits_many(c, batched.id, _grants(f"many-{uuid.uuid4().hex}"))
        await _captured(c)
        return results

    await in_transaction(engine, apart)
    results = await in_transaction(engine, together)
    assert [r.replayed for r in results] == [False, False]
    assert [r.line.balance_after for r in results] == [3000, 3200]
    assert results[-1].wallet.available_credits == 3200
    assert await _written(engine, batched.id) == await _written(engine, one_by_one.id)


async def test_a_repeat_replays_each_and_a_key_used_otherwise_is_refused(
    engine: AsyncEngine,
) -> None:
    w = await new_wallet(engine)
    tag = f"repeat-{uuid.uuid4().hex}"

    async def grant(c: AsyncConnection) -> list[ws.OperationResult]:
        results = await ws.grant_credits_many(c, w.id, _grants(tag))
        if not results[0].replayed:
            await _captured(c)
        return results

    first = await in_transaction(engine, grant)
    again = await in_transaction(engine, grant)
    assert [r.replayed for r in again] == [True, True]
    assert [r.line.id for r in again] == [r.line.id for r in first]
    assert (await _written(engine, w.id))["wallet"][0] == 3200
    # The bonus's key asked again for another amount: refused, nothing written.
    other = [_grants(tag)[0], ws.Grant(**{**_grants(tag)[1].__dict__, "credits": 999})]
    with pytest.raises(IdempotencyMismatch):
        await in_transaction(engine, lambda c: ws.grant_credits_many(c, w.id, other))
    with pytest.raises(ValueError, match="key of its own"):
        await in_transaction(
            engine, lambda c: ws.grant_credits_many(c, w.id, [_grants(tag)[0]] * 2)
        )
    assert len((await _written(engine, w.id))["lines"]) == 2


async def test_three_statements_for_both_lots(engine: AsyncEngine) -> None:
    w = await new_wallet(engine)
    seen: list[str] = []
    async with engine.connect() as c:
        event.listen(c.sync_connection, "before_cursor_execute", lambda *a: seen.append(a[2]))
        async with c.begin():
            await ws.grant_credits_many(c, w.id, _grants(f"count-{uuid.uuid4().hex}"))
            n = len(seen)
            await _captured(c)
    assert n == 3, seen
