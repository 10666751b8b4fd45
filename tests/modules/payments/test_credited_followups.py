"""`payment.credited`'s conditional routes: auto-recharge's consumer (payment.processing)
gets the event only for a payment auto-recharge opened, and usage debt repayment
(wallet.credit) only when the wallet owes usage debt, read in the crediting transaction
under the wallet's row lock. Every other queue routed for it gets it as always."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.db.engine import in_transaction
from commdesk_billing.modules.autorecharge import requests as recharge_requests
from commdesk_billing.modules.payments import labels, ordering
from commdesk_billing.modules.payments import repository as repo
from commdesk_billing.modules.payments.crediting import credit_payment
from commdesk_billing.modules.payments.model import Payment
from commdesk_billing.modules.payments.state import Status
from commdesk_billing.modules.usage import debts, metering, pricebook
from commdesk_billing.modules.usage.consumers import owes_on_credit
from commdesk_billing.modules.usage.model import Policy, Tier
from commdesk_billing.modules.wallet.service import get_or_create_user_wallet, get_wallet
from commdesk_billing.queues import routing

CONDITIONAL = {"payment.processing", "wallet.credit"}


async def _paid(
    engine: AsyncEngine,
    requested_by: str = "followups-member",
    wallet_id: uuid.UUID | None = None,
) -> Payment:
    async def work(c: AsyncConnection) -> Payment:
        if wallet_id is None:
            wallet = await get_or_create_user_wallet(c, f"followups-{uuid.uuid4().hex}")
        else:
            wallet = await get_wallet(c, wallet_id)
        tag = uuid.uuid4().hex
        p = await repo.insert(
            c,
            {
                "id": uuid.uuid4(),
                "user_id": wallet.owner_id,
                "wallet_id": wallet.id,
                "order_id": f"cdb_{tag}",
                "idempotency_key": f"followups:{tag}",
                "request_hash": "x",
                "kind": "pack",
                "pack_code": "pack_300",
                "pack_version": 1,
                "amount_paise": 30000,
                "taxable_paise": 25424,
                "gst_amount_paise": 4576,
                "cgst_paise": 2288,
                "sgst_paise": 2288,
                "igst_paise": 0,
                "gst_mode": "inclusive",
                "gst_rate_bp": 1800,
                "buyer_state": "29",
                "seller_state": "29",
                "base_credits": 3000,
                "bonus_credits": 200,
                "status": Status.PAID.value,
                "order_expires_at": datetime.now(UTC) + timedelta(hours=1),
                "metadata": {"requested_by": requested_by},
            },
        )
        assert p is not None
        return p

    return await in_transaction(engine, work)


async def _credit(engine: AsyncEngine, payment_id: uuid.UUID) -> bool:
    return await in_transaction(engine, lambda c: credit_payment(c, payment_id))


async def _queues(engine: AsyncEngine, payment_id: uuid.UUID) -> set[str]:
    """The queues the payment's `payment.credited` was written for."""
    async with engine.connect() as c:
        rows = await c.execute(
            text("""SELECT queue FROM outbox WHERE message_type = 'payment.credited'
                     AND CAST(body AS jsonb) #>> '{payload,payment_id}' = :p"""),
            {"p": str(payment_id)},
        )
        return {r.queue for r in rows}


def _always() -> set[str]:
    every = set(routing.installed().destinations("payment.credited"))
    assert every >= CONDITIONAL
    return every - CONDITIONAL


async def _overdraft_meter(engine: AsyncEngine) -> str:
    meter = f"m.{uuid.uuid4().hex[:12]}"
    await in_transaction(
        engine,
        lambda c: pricebook.add_version(
            c,
            meter=meter,
            effective_from=datetime.now(UTC) - timedelta(days=1),
            tiers=[Tier(None, 1000)],
            on_insufficient=Policy.overdraft,
            overdraft_limit_credits=500,
            reason="followups test",
            by="tests",
        ),
    )
    return meter


async def _owe(c: AsyncConnection, meter: str, wallet_id: uuid.UUID, units: int = 400) -> None:
    """Usage the empty wallet cannot pay: owed whole, as the metering path writes it (under
    the wallet's row lock)."""
    [result] = await metering.record_batch(
        c,
        source="followups-test",
        events=[
            metering.UsageEvent(
                uuid.uuid4().hex, meter, units, datetime.now(UTC), wallet_id=wallet_id
            )
        ],
        now=datetime.now(UTC),
    )
    assert result.status == "accepted", result


async def test_an_ordinary_purchase_sends_neither_recharge_nor_debt_repayment(
    engine: AsyncEngine,
) -> None:
    p = await _paid(engine)
    assert await _credit(engine, p.id)
    assert await _queues(engine, p.id) == _always()


async def test_an_ordinary_purchases_crediting_statements(engine: AsyncEngine) -> None:
    """Thirteen before: the debt probe costs one; the partner lookup gives one back (the
    buyer's user and attribution read in one), and the bonus lot three (one lock, one read
    of both keys, one written batch for both lots): ten."""
    p = await _paid(engine)
    seen: list[str] = []
    async with engine.connect() as c:
        event.listen(c.sync_connection, "before_cursor_execute", lambda *a: seen.append(a[2]))
        async with c.begin():
            assert await credit_payment(c, p.id)
    flat = [" ".join(s.split()) for s in seen]
    assert sum("FROM usage_debts" in s for s in flat) == 1
    assert sum("partner_attributions" in s for s in flat) == 1
    assert not any(s.startswith("SELECT") and "FROM users WHERE" in s for s in flat)
    assert sum(s.startswith("SELECT") and "FROM wallets WHERE" in s for s in flat) == 1
    assert len(seen) == 10, flat


async def test_a_recharges_payment_is_still_sent_to_auto_recharge(engine: AsyncEngine) -> None:
    # What auto-recharge's requests open their orders and mandate charges under.
    opener = ordering.Buyer.system(recharge_requests.ACTOR, "member", "recharge:x")
    p = await _paid(engine, requested_by=opener.requested_by)
    assert labels.by_auto_recharge(p.metadata)
    assert await _credit(engine, p.id)
    assert await _queues(engine, p.id) == _always() | {"payment.processing"}


async def test_a_wallet_in_usage_debt_is_still_sent_to_repayment(engine: AsyncEngine) -> None:
    p = await _paid(engine)
    meter = await _overdraft_meter(engine)
    await in_transaction(engine, lambda c: _owe(c, meter, p.wallet_id))
    assert await _credit(engine, p.id)
    assert await _queues(engine, p.id) == _always() | {"wallet.credit"}


async def test_once_the_debt_is_repaid_the_next_purchase_sends_nothing(
    engine: AsyncEngine,
) -> None:
    first = await _paid(engine)
    meter = await _overdraft_meter(engine)
    await in_transaction(engine, lambda c: _owe(c, meter, first.wallet_id))
    assert await _credit(engine, first.id)
    assert "wallet.credit" in await _queues(engine, first.id)
    # What the wallet.credit consumer does with it.
    repaid = await in_transaction(
        engine, lambda c: debts.clear(c, first.wallet_id, f"payment:{first.id}")
    )
    assert repaid == 400
    second = await _paid(engine, wallet_id=first.wallet_id)
    assert await _credit(engine, second.id)
    assert await _queues(engine, second.id) == _always()


async def test_a_debt_written_while_the_crediting_waits_for_the_wallet_is_seen(
    engine: AsyncEngine,
) -> None:
    """The race: a usage batch holds the wallet's row (as metering does) and writes a debt;
    the crediting, waiting for that row, must read the debt once the batch commits."""
    p = await _paid(engine)
    meter = await _overdraft_meter(engine)
    async with engine.connect() as batch, batch.begin():
        await batch.execute(
            text("SELECT id FROM wallets WHERE id = :w FOR UPDATE"), {"w": p.wallet_id}
        )
        pid = (await batch.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        crediting = asyncio.create_task(_credit(engine, p.id))
        async with engine.connect() as probe:
            deadline = time.monotonic() + 30  # a loaded machine: the task may start late
            while time.monotonic() < deadline:
                waiting = (
                    await probe.execute(
                        text("""SELECT count(*) FROM pg_stat_activity
                                     WHERE CAST(:pid AS int) = ANY(pg_blocking_pids(pid))"""),
                        {"pid": pid},
                    )
                ).scalar_one()
                if waiting:
                    break
                await asyncio.sleep(0.02)
        assert waiting and not crediting.done()
        await _owe(batch, meter, p.wallet_id)
    # The batch committed: the crediting goes on.
    assert await asyncio.wait_for(crediting, 30)
    assert await _queues(engine, p.id) == _always() | {"wallet.credit"}


async def test_an_event_that_granted_no_credits_or_names_no_wallet_is_sent(
    engine: AsyncEngine,
) -> None:
    """A payment handed over (no credits: the wallet's row is not locked) and an event
    that cannot be read are sent, as before, without asking the database."""
    async with engine.connect() as c:
        wallet: dict[str, Any] = {"wallet_id": str(uuid.uuid4())}
        assert await owes_on_credit(c, {**wallet, "credits": 0})
        assert await owes_on_credit(c, {"credits": 3200})
        assert await owes_on_credit(c, {**wallet, "credits": "many"})
        assert not await owes_on_credit(c, {**wallet, "credits": 3200})
