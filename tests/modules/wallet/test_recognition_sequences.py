"""Revenue recognition over random sequences of real wallet operations (DESIGN §10).

One wallet holds two purchases (a ₹300 pack with its bonus lot, a ₹150 pack) and a
promotional grant. A seeded random mix of batched debits (several on one lot in one batch),
spend holds (captured in full or in part, or released), and refunds (reserved, then
captured with the refund's own taxable value and its `refund.owed` journal, or released),
in every order against each other, runs against PostgreSQL; after each step the lots'
figures and `ledger verify`'s wallet and revenue checks must hold. At the end everything
left is spent, so each purchase lot's recognized + refunded basis is its taxable value.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.db.engine import in_transaction
from commdesk_billing.modules.ledger import invariants as ledger_invariants
from commdesk_billing.modules.ledger import postings
from commdesk_billing.modules.ledger.journals import post_journal
from commdesk_billing.modules.ledger.verify import verify_ledger
from commdesk_billing.modules.refunds.allocation import Parts, Purchase, Room, next_refund
from commdesk_billing.modules.refunds.allocation import refundable as refundable_paise
from commdesk_billing.modules.wallet import invariants as wallet_invariants
from commdesk_billing.modules.wallet import refunds as wallet_refunds
from commdesk_billing.modules.wallet import service as ws
from commdesk_billing.modules.wallet.debits import Debit
from commdesk_billing.modules.wallet.model import LotSource
from tests.conftest import grant_bought

_CHECKS = (*ledger_invariants.CHECKS, *wallet_invariants.CHECKS)


@dataclass
class _Pack:
    purchase: Purchase
    payment_id: uuid.UUID = field(default_factory=uuid.uuid4)
    standing: Parts = field(default_factory=Parts)


@dataclass
class _Open:
    pack: _Pack
    parts: Parts
    hold_id: uuid.UUID
    takes: list[tuple[uuid.UUID, int]]
    key: str = field(default_factory=lambda: uuid.uuid4().hex)


_PACKS = (
    Purchase(30000, 25424, 2288, 2288, 0, 3000, 200),
    Purchase(15000, 12712, 0, 0, 2288, 1500, 0),
)


async def _lots(conn: AsyncConnection, wallet_id: uuid.UUID) -> list[dict[str, int | str]]:
    rows = await conn.execute(
        text("""SELECT source, source_ref, credits_remaining, credits_reserved,
                       taxable_paise, recognized_paise, refunded_paise
                  FROM credit_lots WHERE wallet_id = :w"""),
        {"w": wallet_id},
    )
    return [dict(r._mapping) for r in rows]


async def _fund(engine: AsyncEngine) -> tuple[uuid.UUID, list[_Pack]]:
    wallet = await in_transaction(
        engine, lambda c: ws.get_or_create_user_wallet(c, f"seq-{uuid.uuid4().hex}")
    )
    packs = [_Pack(p) for p in _PACKS]
    for pack in packs:
        p, ref = pack.purchase, str(pack.payment_id)

        async def grant(c: AsyncConnection, p: Purchase = p, ref: str = ref) -> None:
            await grant_bought(
                c,
                wallet_id=wallet.id,
                credits=p.base_credits,
                source=LotSource.purchase,
                idempotency_key=f"payment:{ref}:purchase",
                reason="purchase",
                paid_paise=p.amount_paise,
                taxable_paise=p.taxable_paise,
                source_ref=ref,
            )
            if p.bonus_credits:
                await ws.grant_credits(
                    c,
                    wallet_id=wallet.id,
                    credits=p.bonus_credits,
                    source=LotSource.bonus,
                    idempotency_key=f"payment:{ref}:bonus",
                    reason="bonus",
                    source_ref=ref,
                )

        await in_transaction(engine, grant)
    await in_transaction(
        engine,
        lambda c: ws.grant_credits(
            c,
            wallet_id=wallet.id,
            credits=150,
            source=LotSource.promotional,
            idempotency_key=f"promo:{wallet.id}",
            reason="promotion",
            expires_at=datetime.now(UTC) + timedelta(days=30),
        ),
    )
    return wallet.id, packs


async def _request_refund(
    conn: AsyncConnection, rng: random.Random, wallet_id: uuid.UUID, pack: _Pack
) -> _Open | None:
    wallet = await ws.get_wallet(conn, wallet_id, lock=True)
    lots = await ws.lots_of_payment(conn, pack.payment_id)
    room = Room(
        base_drawable=lots["purchase"][1],
        bonus_drawable=lots["bonus"][1] if "bonus" in lots else 0,
        available=wallet.available_credits,
    )
    can = refundable_paise(pack.purchase, pack.standing, room)
    if can < 100:
        return None
    amount = rng.choice([can, rng.randint(100, can), 100, min(can, 101)])
    parts = next_refund(pack.purchase, pack.standing, amount)
    if parts.credits == 0:
        return None
    takes = [(lots["purchase"][0], parts.base_credits)] if parts.base_credits else []
    if parts.bonus_credits:
        takes.append((lots["bonus"][0], parts.bonus_credits))
    held = await wallet_refunds.reserve_for_refund(
        conn,
        wallet_id=wallet_id,
        takes=takes,
        idempotency_key=f"rf:{uuid.uuid4().hex}:hold",
        reason="refund",
        refund_ref="rf_seq",
    )
    assert held.hold is not None
    return _Open(pack, parts, held.hold.id, takes)


async def _settle(conn: AsyncConnection, refund: _Open, succeed: bool) -> None:
    if not succeed:
        await wallet_refunds.release_refund(
            conn,
            hold_id=refund.hold_id,
            takes=refund.takes,
            idempotency_key=f"rf:{refund.key}:release",
            reason="refund failed",
            refund_ref="rf_seq",
        )
        return
    await wallet_refunds.capture_refund(
        conn,
        hold_id=refund.hold_id,
        takes=refund.takes,
        idempotency_key=f"rf:{refund.key}:capture",
        reason="refund",
        refund_ref="rf_seq",
        taxable_paise=refund.parts.taxable_paise,
    )
    await post_journal(
        conn,
        postings.refund_owed(
            refund_id=uuid.uuid4(),
            refund_ref="rf_seq",
            payment_id=refund.pack.payment_id,
            order_id="order_seq",
            amount=refund.parts.amount_paise,
            taxable=refund.parts.taxable_paise,
            tax=refund.parts.tax_paise,
            at=datetime.now(UTC),
        ),
    )


async def _check(engine: AsyncEngine, wallet_id: uuid.UUID, step: str) -> None:
    report = await verify_ledger(engine, _CHECKS)
    assert report.ok, (step, report.findings)
    for lot in await in_transaction(engine, lambda c: _lots(c, wallet_id)):
        unrecognized = int(lot["taxable_paise"]) - int(lot["recognized_paise"])
        unrecognized -= int(lot["refunded_paise"])
        assert int(lot["recognized_paise"]) >= 0 and unrecognized >= 0, (step, lot)


async def _close_hold(
    engine: AsyncEngine, rng: random.Random, hold_id: uuid.UUID, held: int
) -> None:
    if rng.random() < 0.25:
        await in_transaction(
            engine,
            lambda c: ws.release_credits(c, hold_id=hold_id, idempotency_key=f"r:{uuid.uuid4()}"),
        )
        return
    take = rng.choice([held, rng.randint(1, held)])
    await in_transaction(
        engine,
        lambda c: ws.capture_hold(
            c, hold_id=hold_id, idempotency_key=f"c:{uuid.uuid4()}", credits=take
        ),
    )


@pytest.mark.parametrize("seed", range(8))
async def test_random_sequences_keep_every_lot_and_the_ledger_in_step(
    seed: int, scratch_engine: AsyncEngine
) -> None:
    rng = random.Random(seed)
    wallet_id, packs = await _fund(scratch_engine)
    pending: list[_Open] = []
    holds: list[tuple[uuid.UUID, int]] = []
    for step in range(40):
        wallet = await in_transaction(scratch_engine, lambda c: ws.get_wallet(c, wallet_id))
        op = rng.choice(["batch", "batch", "hold", "capture", "refund", "settle"])
        label = f"seed {seed} step {step} {op}"
        if op == "batch" and wallet.available_credits:
            left, debits = wallet.available_credits, []
            for i in range(rng.randint(1, 4)):
                if not left:
                    break
                k = rng.choice([1, 2, 3, rng.randint(1, left), left])
                k = min(k, left)
                debits.append(Debit(wallet_id, k, f"d:{seed}:{step}:{i}:{uuid.uuid4()}", "x"))
                left -= k
            out = await in_transaction(
                scratch_engine, lambda c, d=debits: ws.consume_credits_many(c, d)
            )
            assert all(o.error is None for o in out), out
        elif op == "hold" and wallet.available_credits:
            k = rng.randint(1, wallet.available_credits)
            held = await in_transaction(
                scratch_engine,
                lambda c, k=k: ws.lock_credits(
                    c,
                    wallet_id=wallet_id,
                    credits=k,
                    idempotency_key=f"h:{uuid.uuid4()}",
                    reason="hold",
                    ttl_s=600,
                ),
            )
            assert held.hold is not None
            holds.append((held.hold.id, k))
        elif op == "capture" and holds:
            hold_id, k = holds.pop(rng.randrange(len(holds)))
            await _close_hold(scratch_engine, rng, hold_id, k)
        elif op == "refund":
            pack = rng.choice(packs)
            opened = await in_transaction(
                scratch_engine,
                lambda c, pack=pack: _request_refund(c, rng, wallet_id, pack),
            )
            if opened is not None:
                pack.standing = pack.standing + opened.parts
                pending.append(opened)
        elif op == "settle" and pending:
            refund = pending.pop(rng.randrange(len(pending)))
            succeed = rng.random() < 0.7
            await in_transaction(scratch_engine, lambda c, r=refund, s=succeed: _settle(c, r, s))
            if not succeed:
                # What the allocation sees as standing: a failed refund no longer is.
                refund.pack.standing = Parts(
                    *(
                        getattr(refund.pack.standing, f) - getattr(refund.parts, f)
                        for f in Parts.__dataclass_fields__
                    )
                )
        await _check(scratch_engine, wallet_id, label)
    for hold_id, k in holds:
        await _close_hold(scratch_engine, rng, hold_id, k)
    for refund in pending:
        await in_transaction(scratch_engine, lambda c, r=refund: _settle(c, r, True))
    wallet = await in_transaction(scratch_engine, lambda c: ws.get_wallet(c, wallet_id))
    if wallet.available_credits:
        await in_transaction(
            scratch_engine,
            lambda c: ws.consume_credits(
                c,
                wallet_id=wallet_id,
                credits=wallet.available_credits,
                idempotency_key=f"end:{wallet_id}",
                reason="the rest",
            ),
        )
    await _check(scratch_engine, wallet_id, f"seed {seed} end")
    for lot in await in_transaction(scratch_engine, lambda c: _lots(c, wallet_id)):
        assert lot["credits_remaining"] == 0
        assert lot["recognized_paise"] + lot["refunded_paise"] == lot["taxable_paise"], lot
