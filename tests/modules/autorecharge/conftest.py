"""Helpers of the auto-recharge tests: a member's wallet with auto-recharge on, debits and
grants through the wallet's own service, and what the module wrote."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from commdesk_billing.config import Settings
from commdesk_billing.db.engine import in_transaction
from commdesk_billing.modules.autorecharge import service
from commdesk_billing.modules.autorecharge.schemas import AutoRechargeOut, AutoRechargeRequest
from commdesk_billing.modules.wallet import service as ws
from commdesk_billing.modules.wallet.model import LotSource, Wallet
from commdesk_billing.security.jwt import Principal, Role
from tests.conftest import new_wallet


@dataclass
class Member:
    sub: str
    wallet: Wallet

    @property
    def principal(self) -> Principal:
        return Principal(sub=self.sub, role=Role.member, scopes=frozenset())


async def member(engine: AsyncEngine, credits: int) -> Member:
    sub = f"ar-{uuid.uuid4().hex}"
    return Member(sub, await new_wallet(engine, credits, sub=sub))


async def enable(
    engine: AsyncEngine, settings: Settings, m: Member, **fields: Any
) -> AutoRechargeOut:
    body = AutoRechargeRequest.model_validate(
        {"enabled": True, "pack_code": "pack_150", "customer_phone": "9876543210", **fields}
    )
    return await in_transaction(
        engine, lambda c: service.configure(c, settings, m.principal, m.wallet.id, body)
    )


async def debit(engine: AsyncEngine, wallet_id: uuid.UUID, credits: int) -> Wallet:
    result = await in_transaction(
        engine,
        lambda c: ws.consume_credits(
            c,
            wallet_id=wallet_id,
            credits=credits,
            idempotency_key=f"ar-test:{uuid.uuid4()}",
            reason="usage",
        ),
    )
    return result.wallet


async def top_up(engine: AsyncEngine, wallet_id: uuid.UUID, credits: int) -> Wallet:
    """Promotional credits: the wallet back above its level without a purchase."""
    result = await in_transaction(
        engine,
        lambda c: ws.grant_credits(
            c,
            wallet_id=wallet_id,
            credits=credits,
            source=LotSource.promotional,
            idempotency_key=f"ar-promo:{uuid.uuid4()}",
            reason="promotion",
        ),
    )
    return result.wallet


async def rows(engine: AsyncEngine, query: str, **params: Any) -> list[Any]:
    async with engine.connect() as conn:
        return list((await conn.execute(text(query), params)).all())


async def recharges(engine: AsyncEngine, wallet_id: uuid.UUID) -> list[Any]:
    return await rows(
        engine,
        "SELECT id, status, reason, payment_id, credits FROM auto_recharges"
        " WHERE wallet_id = :w ORDER BY created_at",
        w=wallet_id,
    )


async def decisions(engine: AsyncEngine, wallet_id: uuid.UUID) -> list[tuple[str, str | None]]:
    found = await rows(
        engine,
        "SELECT decision, reason FROM auto_recharge_events WHERE wallet_id = :w"
        " AND decision <> 'configured' ORDER BY id",
        w=wallet_id,
    )
    return [(r.decision, r.reason) for r in found]


async def outbox_count(engine: AsyncEngine, message_type: str, wallet_id: uuid.UUID) -> int:
    found = await rows(
        engine,
        "SELECT count(*) FROM outbox WHERE message_type = :t AND body LIKE :w",
        t=message_type,
        w=f"%{wallet_id}%",
    )
    return int(found[0][0])


async def cross(engine: AsyncEngine, m: Member) -> uuid.UUID:
    """Bring the wallet to 10 above its level, then debit 20 across it; the request that
    the crossing wrote."""
    wallet = await in_transaction(engine, lambda c: ws.get_wallet(c, m.wallet.id))
    assert wallet.auto_recharge_trigger is not None
    target = wallet.auto_recharge_trigger + 10
    if wallet.available_credits < target:
        await top_up(engine, m.wallet.id, target - wallet.available_credits)
    elif wallet.available_credits > target:
        await debit(engine, m.wallet.id, wallet.available_credits - target)
    await debit(engine, m.wallet.id, 20)
    found = await rows(
        engine,
        "SELECT id FROM auto_recharges WHERE wallet_id = :w AND status = 'requested'",
        w=m.wallet.id,
    )
    assert len(found) == 1, found
    return uuid.UUID(str(found[0][0]))
