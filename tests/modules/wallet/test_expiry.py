"""Expiry and breakage (DESIGN §10): an expired lot's credits are forfeited with a statement
line, its unrecognized basis becomes breakage revenue, and only what the wallet can give up
now expires (credits behind an active hold wait for the hold)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from commdesk_billing.db.engine import in_transaction
from commdesk_billing.modules.ledger.model import House
from commdesk_billing.modules.ledger.verify import verify_ledger
from commdesk_billing.modules.wallet import service as ws
from commdesk_billing.modules.wallet.jobs import expire_lots
from commdesk_billing.modules.wallet.model import LotSource, TxnType
from tests.conftest import grant_bought, new_wallet

PAST = datetime.now(UTC) - timedelta(days=1)


async def _balance(engine: AsyncEngine, account: uuid.UUID) -> int:
    async with engine.connect() as conn:
        return int(
            (
                await conn.execute(
                    text(
                        "SELECT coalesce(-sum(amount), 0) FROM ledger_entries WHERE account_id = :a"
                    ),
                    {"a": account},
                )
            ).scalar_one()
        )


async def _grant(
    engine: AsyncEngine, wallet_id: uuid.UUID, credits: int, *, expires: datetime | None, paid: int
) -> uuid.UUID:
    result = await in_transaction(
        engine,
        lambda c: grant_bought(
            c,
            wallet_id=wallet_id,
            credits=credits,
            source=LotSource.purchase if paid else LotSource.promotional,
            idempotency_key=f"g:{uuid.uuid4()}",
            reason="grant",
            paid_paise=paid,
            taxable_paise=paid * 100 // 118,
            expires_at=expires,
        ),
    )
    assert result.line.lot_id is not None
    return result.line.lot_id


async def test_an_expired_lot_goes_to_breakage_and_the_rest_stays(
    scratch_engine: AsyncEngine,
) -> None:
    engine = scratch_engine
    wallet = await new_wallet(engine, 500)  # no expiry
    await _grant(engine, wallet.id, 1000, expires=PAST, paid=10_000)  # 8474 paise of basis
    await in_transaction(
        engine,
        lambda c: ws.consume_credits(
            c, wallet_id=wallet.id, credits=100, idempotency_key="d1", reason="spend"
        ),
    )  # drawn from the expiring lot first: round-half-up(8474 * 100 / 1000) = 847
    deferred = await _balance(engine, House.DEFERRED_REVENUE)
    assert await expire_lots(engine) == 900
    assert await expire_lots(engine) == 0  # nothing twice
    w = await in_transaction(engine, lambda c: ws.get_wallet(c, wallet.id))
    assert w.available_credits == 500
    assert await _balance(engine, House.BREAKAGE_REVENUE) == 8474 - 847
    assert await _balance(engine, House.DEFERRED_REVENUE) == deferred - (8474 - 847)
    lines = await in_transaction(
        engine, lambda c: ws.list_statement(c, wallet.id, before_seq=None, limit=10)
    )
    assert lines[0].transaction_type is TxnType.expiry and lines[0].credits == 900
    assert lines[0].metadata["basis_paise"] == 8474 - 847
    report = await verify_ledger(engine)
    assert report.ok, report.findings


async def test_credits_behind_a_hold_wait_for_it(scratch_engine: AsyncEngine) -> None:
    engine = scratch_engine
    wallet = await new_wallet(engine)
    await _grant(engine, wallet.id, 100, expires=PAST, paid=0)  # promotional: no basis
    held = await in_transaction(
        engine,
        lambda c: ws.lock_credits(
            c, wallet_id=wallet.id, credits=60, idempotency_key="h1", reason="call", ttl_s=600
        ),
    )
    assert await expire_lots(engine) == 40  # the 60 held are not the wallet's to give up
    assert held.hold is not None
    hold_id = held.hold.id
    await in_transaction(
        engine,
        lambda c: ws.release_credits(c, hold_id=hold_id, idempotency_key="r1", reason="hung up"),
    )
    assert await expire_lots(engine) == 60
    w = await in_transaction(engine, lambda c: ws.get_wallet(c, wallet.id))
    assert (w.available_credits, w.locked_credits) == (0, 0)
    assert await _balance(engine, House.EXPIRED) == 100
    assert await _balance(engine, House.BREAKAGE_REVENUE) == 0
    report = await verify_ledger(engine)
    assert report.ok, report.findings
