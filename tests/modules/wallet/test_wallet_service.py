"""Wallet service operations on real PostgreSQL: FIFO lots, holds, refunds, idempotency."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from commdesk_billing.db.engine import in_transaction
from commdesk_billing.errors import (
    HoldExpired,
    HoldNotActive,
    IdempotencyMismatch,
    InsufficientCredits,
    InvalidAmount,
    NotFound,
)
from commdesk_billing.modules.wallet import refunds as wallet_refunds
from commdesk_billing.modules.wallet import repository as wallet_repo
from commdesk_billing.modules.wallet import service as ws
from commdesk_billing.modules.wallet.jobs import expire_holds
from commdesk_billing.modules.wallet.model import HoldStatus, LotSource, TxnType
from tests.conftest import grant_bought, new_wallet


async def _lots(engine: AsyncEngine, wallet_id: uuid.UUID) -> list[tuple[str, int, int]]:
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT source, credits_remaining, credits_refunded FROM credit_lots"
                    " WHERE wallet_id = :w ORDER BY granted_at"
                ),
                {"w": wallet_id},
            )
        ).all()
    return [(r.source, r.credits_remaining, r.credits_refunded) for r in rows]


async def _consistent(engine: AsyncEngine, wallet_id: uuid.UUID) -> None:
    report = await in_transaction(engine, lambda c: ws.sync_balance(c, wallet_id))
    assert report.consistent, report.drift


async def test_grant_creates_a_lot_statement_line_and_counts_purchases(engine: AsyncEngine) -> None:
    wallet = await new_wallet(engine)
    r = await in_transaction(
        engine,
        lambda c: grant_bought(
            c,
            wallet_id=wallet.id,
            credits=3000,
            source=LotSource.purchase,
            idempotency_key="p:1" + str(wallet.id),
            reason="pack",
            paid_paise=30000,
            taxable_paise=25424,
        ),
    )
    assert (r.wallet.available_credits, r.wallet.lifetime_purchased_credits) == (3000, 3000)
    assert (r.line.transaction_type, r.line.balance_before, r.line.balance_after) == (
        TxnType.purchase,
        0,
        3000,
    )
    b = await in_transaction(
        engine,
        lambda c: ws.grant_credits(
            c,
            wallet_id=wallet.id,
            credits=200,
            source=LotSource.bonus,
            idempotency_key=f"b:{wallet.id}",
            reason="pack bonus",
        ),
    )
    assert (b.wallet.available_credits, b.wallet.lifetime_purchased_credits) == (3200, 3000)
    assert await _lots(engine, wallet.id) == [("purchase", 3000, 0), ("bonus", 200, 0)]
    await _consistent(engine, wallet.id)


async def test_consumption_draws_lots_fifo_soonest_expiry_first(engine: AsyncEngine) -> None:
    wallet = await new_wallet(engine)
    soon = datetime.now(UTC) + timedelta(days=1)
    for key, credits, expires in (("a", 100, None), ("b", 50, soon), ("c", 70, None)):
        await in_transaction(
            engine,
            lambda c, k=key, n=credits, e=expires: ws.grant_credits(
                c,
                wallet_id=wallet.id,
                credits=n,
                source=LotSource.promotional,
                idempotency_key=f"{k}:{wallet.id}",
                reason="g",
                expires_at=e,
            ),
        )
    await in_transaction(
        engine,
        lambda c: ws.consume_credits(
            c, wallet_id=wallet.id, credits=120, idempotency_key=f"d:{wallet.id}", reason="spend"
        ),
    )
    # Expiring lot b first (50), then the oldest non-expiring lot a (70 of 100).
    assert sorted(await _lots(engine, wallet.id)) == sorted(
        [("promotional", 30, 0), ("promotional", 0, 0), ("promotional", 70, 0)]
    )
    async with engine.connect() as conn:
        moved = (
            await conn.execute(
                text(
                    "SELECT sum(m.credits) FROM credit_lot_movements m JOIN wallet_transactions t"
                    " ON t.id = m.wallet_transaction_id WHERE t.idempotency_key = :k"
                ),
                {"k": f"d:{wallet.id}"},
            )
        ).scalar_one()
    assert moved == -120
    await _consistent(engine, wallet.id)


async def test_consumption_never_goes_below_zero(engine: AsyncEngine) -> None:
    wallet = await new_wallet(engine, 100)
    with pytest.raises(InsufficientCredits) as err:
        await in_transaction(
            engine,
            lambda c: ws.consume_credits(
                c,
                wallet_id=wallet.id,
                credits=101,
                idempotency_key=f"x:{wallet.id}",
                reason="too much",
            ),
        )
    assert err.value.extra["available_credits"] == 100
    r = await in_transaction(
        engine,
        lambda c: ws.consume_credits(
            c, wallet_id=wallet.id, credits=100, idempotency_key=f"y:{wallet.id}", reason="all"
        ),
    )
    assert r.wallet.available_credits == 0
    await _consistent(engine, wallet.id)


@pytest.mark.parametrize("credits", [0, -5, 10**14, True, 1.5])
async def test_invalid_amounts_are_refused(engine: AsyncEngine, credits: object) -> None:
    wallet = await new_wallet(engine, 10)
    with pytest.raises(InvalidAmount):
        await in_transaction(
            engine,
            lambda c: ws.consume_credits(
                c,
                wallet_id=wallet.id,
                credits=credits,  # type: ignore[arg-type]
                idempotency_key=f"bad:{uuid.uuid4()}",
                reason="bad",
            ),
        )


async def test_unknown_wallet_is_not_found(engine: AsyncEngine) -> None:
    with pytest.raises(NotFound):
        await in_transaction(
            engine,
            lambda c: ws.consume_credits(
                c, wallet_id=uuid.uuid4(), credits=1, idempotency_key="nf", reason="x"
            ),
        )


async def test_replaying_a_key_returns_the_first_result_and_changes_nothing(
    engine: AsyncEngine,
) -> None:
    wallet = await new_wallet(engine, 100)
    key = f"dup:{wallet.id}"
    first = await in_transaction(
        engine,
        lambda c: ws.consume_credits(
            c, wallet_id=wallet.id, credits=30, idempotency_key=key, reason="once"
        ),
    )
    again = await in_transaction(
        engine,
        lambda c: ws.consume_credits(
            c, wallet_id=wallet.id, credits=30, idempotency_key=key, reason="once"
        ),
    )
    assert again.replayed and again.line == first.line
    assert again.wallet.available_credits == 70
    with pytest.raises(IdempotencyMismatch):
        await in_transaction(
            engine,
            lambda c: ws.consume_credits(
                c, wallet_id=wallet.id, credits=31, idempotency_key=key, reason="other"
            ),
        )
    with pytest.raises(IdempotencyMismatch):
        await in_transaction(
            engine,
            lambda c: ws.lock_credits(
                c, wallet_id=wallet.id, credits=30, idempotency_key=key, reason="x", ttl_s=60
            ),
        )


async def test_hold_partial_capture_releases_the_rest(engine: AsyncEngine) -> None:
    wallet = await new_wallet(engine, 500)
    held = await in_transaction(
        engine,
        lambda c: ws.lock_credits(
            c,
            wallet_id=wallet.id,
            credits=200,
            idempotency_key=f"h:{wallet.id}",
            reason="ticket",
            ttl_s=60,
        ),
    )
    assert (held.wallet.available_credits, held.wallet.locked_credits) == (300, 200)
    assert held.hold is not None
    with pytest.raises(InsufficientCredits):  # held credits are not spendable
        await in_transaction(
            engine,
            lambda c: ws.consume_credits(
                c, wallet_id=wallet.id, credits=301, idempotency_key=f"o:{wallet.id}", reason="x"
            ),
        )
    with pytest.raises(InvalidAmount):
        await in_transaction(
            engine,
            lambda c: ws.capture_hold(
                c, hold_id=held.hold.id, credits=201, idempotency_key=f"c0:{wallet.id}"
            ),
        )
    cap = await in_transaction(
        engine,
        lambda c: ws.capture_hold(
            c, hold_id=held.hold.id, credits=150, idempotency_key=f"c:{wallet.id}"
        ),
    )
    assert (cap.wallet.available_credits, cap.wallet.locked_credits) == (350, 0)
    assert cap.hold is not None and (
        cap.hold.status,
        cap.hold.captured_credits,
        cap.hold.released_credits,
    ) == (HoldStatus.captured, 150, 50)
    assert (cap.line.balance_before, cap.line.balance_after) == (300, 350)
    with pytest.raises(HoldNotActive):
        await in_transaction(
            engine,
            lambda c: ws.release_credits(c, hold_id=held.hold.id, idempotency_key=f"r:{wallet.id}"),
        )
    replay = await in_transaction(
        engine,
        lambda c: ws.capture_hold(
            c, hold_id=held.hold.id, credits=150, idempotency_key=f"c:{wallet.id}"
        ),
    )
    assert replay.replayed and replay.line == cap.line
    await _consistent(engine, wallet.id)


async def test_release_and_expiry(engine: AsyncEngine) -> None:
    wallet = await new_wallet(engine, 100)
    h1 = await in_transaction(
        engine,
        lambda c: ws.lock_credits(
            c,
            wallet_id=wallet.id,
            credits=40,
            idempotency_key=f"h1:{wallet.id}",
            reason="a",
            ttl_s=60,
        ),
    )
    rel = await in_transaction(
        engine,
        lambda c: ws.release_credits(c, hold_id=h1.hold.id, idempotency_key=f"r1:{wallet.id}"),
    )  # type: ignore[union-attr]
    assert rel.wallet.available_credits == 100 and rel.hold.status is HoldStatus.released  # type: ignore[union-attr]

    h2 = await in_transaction(
        engine,
        lambda c: ws.lock_credits(
            c,
            wallet_id=wallet.id,
            credits=60,
            idempotency_key=f"h2:{wallet.id}",
            reason="b",
            ttl_s=1,
        ),
    )
    async with engine.begin() as conn:  # age the hold instead of sleeping
        await conn.execute(
            text(
                "UPDATE wallet_holds SET expires_at = now() - interval '1 s',"
                " created_at = now() - interval '2 s' WHERE id = :id"
            ),
            {"id": h2.hold.id},
        )  # type: ignore[union-attr]
    with pytest.raises(HoldExpired):
        await in_transaction(
            engine,
            lambda c: ws.capture_hold(c, hold_id=h2.hold.id, idempotency_key=f"c2:{wallet.id}"),
        )  # type: ignore[union-attr]
    assert await expire_holds(engine) >= 1
    hold = await in_transaction(engine, lambda c: ws.get_hold(c, h2.hold.id))  # type: ignore[union-attr]
    assert hold.status is HoldStatus.expired and hold.released_credits == 60
    w = await in_transaction(engine, lambda c: ws.get_wallet(c, wallet.id))
    assert (w.available_credits, w.locked_credits) == (100, 0)
    await _consistent(engine, wallet.id)


async def test_refund_claws_back_only_the_unconsumed_part_of_a_lot(
    scratch_engine: AsyncEngine,
) -> None:
    # Its own database: refunded at the wallet's level, with no refund row behind it.
    engine = scratch_engine
    """The production path (`wallet.refunds`): a refund reserves credits of its purchase's
    lot, and only what is still unconsumed and unreserved there can be taken."""
    wallet = await new_wallet(engine)
    grant = await in_transaction(
        engine,
        lambda c: grant_bought(
            c,
            wallet_id=wallet.id,
            credits=1000,
            source=LotSource.purchase,
            idempotency_key=f"g:{wallet.id}",
            reason="pack",
            paid_paise=10000,
            taxable_paise=8475,
        ),
    )
    lot_id = grant.line.lot_id
    assert lot_id is not None
    await in_transaction(
        engine,
        lambda c: ws.consume_credits(
            c, wallet_id=wallet.id, credits=300, idempotency_key=f"d:{wallet.id}", reason="spend"
        ),
    )

    def reserve(credits: int, key: str) -> Any:
        return lambda c: wallet_refunds.reserve_for_refund(
            c,
            wallet_id=wallet.id,
            takes=[(lot_id, credits)],
            idempotency_key=f"{key}:{wallet.id}",
            reason="refund",
            refund_ref=f"rf_{key}",
        )

    with pytest.raises(InsufficientCredits) as err:
        await in_transaction(engine, reserve(701, "r0"))
    assert (err.value.extra["available_credits"], err.value.extra["requested_credits"]) == (
        700,
        701,
    )
    part = await in_transaction(engine, reserve(200, "r1"))
    assert part.hold is not None
    # 200 of the lot's 700 are earmarked now: 501 more is over what is left.
    with pytest.raises(InsufficientCredits):
        await in_transaction(engine, reserve(501, "r2"))
    rest = await in_transaction(engine, reserve(500, "r3"))
    assert rest.hold is not None and rest.wallet.available_credits == 0
    hold_id = part.hold.id
    taken = await in_transaction(
        engine,
        lambda c: wallet_refunds.capture_refund(
            c,
            hold_id=hold_id,
            takes=[(lot_id, 200)],
            idempotency_key=f"rc1:{wallet.id}",
            reason="refund done",
            refund_ref="rf_r1",
            taxable_paise=1695,  # ₹20 of ₹100 at 8475 taxable
        ),
    )
    assert (taken.line.credits, taken.wallet.locked_credits) == (200, 500)
    assert await _lots(engine, wallet.id) == [("purchase", 500, 200)]
    # The 300 consumed recognized round-half-up(8475 * 300 / 1000) = 2543; the refund took
    # its own taxable value; the rest is still deferred.
    lot = await in_transaction(engine, lambda c: wallet_repo.get_lot(c, lot_id))
    assert lot is not None
    assert (lot.recognized_paise, lot.refunded_paise, lot.unrecognized_paise) == (
        2543,
        1695,
        8475 - 2543 - 1695,
    )
    await _consistent(engine, wallet.id)


async def test_promotional_credits_are_never_refundable(engine: AsyncEngine) -> None:
    wallet = await new_wallet(engine)
    grant = await in_transaction(
        engine,
        lambda c: ws.grant_credits(
            c,
            wallet_id=wallet.id,
            credits=50,
            source=LotSource.promotional,
            idempotency_key=f"g:{wallet.id}",
            reason="promo",
        ),
    )
    assert grant.line.lot_id is not None
    lot_id = grant.line.lot_id
    with pytest.raises(InvalidAmount):
        await in_transaction(
            engine,
            lambda c: wallet_refunds.reserve_for_refund(
                c,
                wallet_id=wallet.id,
                takes=[(lot_id, 10)],
                idempotency_key=f"r:{wallet.id}",
                reason="no",
                refund_ref="rf_promo",
            ),
        )
    w = await in_transaction(engine, lambda c: ws.get_wallet(c, wallet.id))
    assert (w.available_credits, w.locked_credits) == (50, 0)


async def test_sync_balance_reports_drift_and_never_fixes_it(scratch_engine: AsyncEngine) -> None:
    wallet = await new_wallet(scratch_engine, 100)
    async with scratch_engine.begin() as conn:
        await conn.execute(
            text("UPDATE wallets SET available_credits = 150 WHERE id = :id"), {"id": wallet.id}
        )
    report = await in_transaction(scratch_engine, lambda c: ws.sync_balance(c, wallet.id))
    assert not report.consistent
    assert report.drift["available"] == 50 and report.ledger_available == 100
    w = await in_transaction(scratch_engine, lambda c: ws.get_wallet(c, wallet.id))
    assert w.available_credits == 150  # reported, not "fixed"
