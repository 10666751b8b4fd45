"""Credits made available without a purchase's crediting (a grant, a spend hold released or
captured in part) announce `wallet.credits_available` in their own transaction, to the
`wallet.credit` queue only while the wallet owes usage debt; its consumer repays the debt
under the operation's cause, once however often it is delivered."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text

from commdesk_billing.db.engine import in_transaction
from commdesk_billing.modules.ledger.verify import verify_ledger
from commdesk_billing.modules.usage import invariants
from commdesk_billing.modules.usage.consumers import repay_debts
from commdesk_billing.modules.wallet import service as ws
from commdesk_billing.modules.wallet.model import LotSource, Wallet
from commdesk_billing.queues.envelope import Envelope
from tests.modules.usage.conftest import Usage, event

MakeWallet = Callable[..., Awaitable[Wallet]]


async def _announced(usage: Usage, wallet_id: uuid.UUID) -> list[Envelope]:
    async with usage.engine.connect() as conn:
        rows = (
            await conn.execute(
                text("""SELECT queue, body FROM outbox
                         WHERE message_type = 'wallet.credits_available'
                           AND CAST(body AS jsonb) -> 'payload' ->> 'wallet_id' = :w
                         ORDER BY id"""),
                {"w": str(wallet_id)},
            )
        ).all()
    assert {q for q, _ in rows} <= {"wallet.credit"}
    return [Envelope.model_validate_json(b) for _, b in rows]


async def _repaid(usage: Usage, wallet_id: uuid.UUID) -> list[tuple[Any, ...]]:
    async with usage.engine.connect() as conn:
        rows = (
            await conn.execute(
                text("""SELECT credits, cause FROM usage_debt_repayments
                         WHERE wallet_id = :w ORDER BY created_at, cause"""),
                {"w": wallet_id},
            )
        ).all()
    return [tuple(r) for r in rows]


async def _owing(usage: Usage, make_wallet: MakeWallet, credits: int) -> Wallet:
    wallet = await make_wallet(0)
    meter = usage.meter()
    await usage.price(meter, [(None, 1000)], policy="overdraft", limit=500)
    at = datetime.now(UTC) - timedelta(minutes=1)
    (owed,) = await usage.accepted([event("a1", meter, credits, wallet.id, at)])
    assert owed["debt_credits"] == credits
    return wallet


async def test_a_grant_announces_and_its_delivery_repays_once(
    usage: Usage, make_wallet: MakeWallet
) -> None:
    wallet = await _owing(usage, make_wallet, 40)
    granted = await in_transaction(
        usage.engine,
        lambda c: ws.grant_credits(
            c,
            wallet_id=wallet.id,
            credits=100,
            source=LotSource.promotional,
            idempotency_key=f"promo-{uuid.uuid4()}",
            reason="goodwill",
        ),
    )
    (envelope,) = await _announced(usage, wallet.id)
    cause = f"grant:{granted.line.id}"
    assert envelope.payload == {"wallet_id": str(wallet.id), "credits": 100, "cause": cause}
    for _ in range(2):  # delivered again: nothing repaid twice
        await in_transaction(usage.engine, lambda c: repay_debts(c, envelope))
    assert await _repaid(usage, wallet.id) == [(40, cause)]
    assert (await usage.figures(wallet.id)).available == 60
    report = await verify_ledger(usage.engine, checks=list(invariants.CHECKS))
    assert report.findings == []


async def test_a_released_spend_hold_announces_its_credits(
    usage: Usage, make_wallet: MakeWallet
) -> None:
    # Credits on hold when the usage came: the overdraft could not draw them, so it owed.
    wallet = await make_wallet(0)
    await in_transaction(
        usage.engine,
        lambda c: ws.grant_credits(
            c,
            wallet_id=wallet.id,
            credits=100,
            source=LotSource.promotional,
            idempotency_key=f"promo-{uuid.uuid4()}",
            reason="goodwill",
        ),
    )
    held = await in_transaction(
        usage.engine,
        lambda c: ws.lock_credits(
            c,
            wallet_id=wallet.id,
            credits=100,
            idempotency_key=f"hold-{uuid.uuid4()}",
            reason="a spend in flight",
            ttl_s=3600,
        ),
    )
    assert held.hold is not None
    meter = usage.meter()
    await usage.price(meter, [(None, 1000)], policy="overdraft", limit=500)
    at = datetime.now(UTC) - timedelta(minutes=1)
    (owed,) = await usage.accepted([event("s1", meter, 30, wallet.id, at)])
    assert owed["debt_credits"] == 30
    # The wallet owed nothing when it was granted: no message then.
    assert await _announced(usage, wallet.id) == []
    await in_transaction(
        usage.engine,
        lambda c: ws.release_credits(c, hold_id=held.hold.id, idempotency_key=f"r-{uuid.uuid4()}"),
    )
    (envelope,) = await _announced(usage, wallet.id)
    assert envelope.payload["cause"] == f"hold:{held.hold.id}:release"
    await in_transaction(usage.engine, lambda c: repay_debts(c, envelope))
    assert await _repaid(usage, wallet.id) == [(30, f"hold:{held.hold.id}:release")]
    assert (await usage.figures(wallet.id)).available == 70


async def test_credits_made_available_to_a_wallet_that_owes_nothing_send_nothing(
    usage: Usage, make_wallet: MakeWallet
) -> None:
    wallet = await make_wallet(0)
    await in_transaction(
        usage.engine,
        lambda c: ws.grant_credits(
            c,
            wallet_id=wallet.id,
            credits=10,
            source=LotSource.promotional,
            idempotency_key=f"promo-{uuid.uuid4()}",
            reason="goodwill",
        ),
    )
    assert await _announced(usage, wallet.id) == []
