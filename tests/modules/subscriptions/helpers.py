"""What the subscriptions' tests share: plans made through the API, funded members,
subscriptions, and reads of what the books and the billing log say."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from commdesk_billing.config import Settings
from commdesk_billing.db.engine import in_transaction
from commdesk_billing.modules.ledger.model import House
from commdesk_billing.modules.subscriptions import service as subs
from commdesk_billing.modules.wallet import service as ws
from commdesk_billing.modules.wallet.model import LotSource, Wallet
from commdesk_billing.security.jwt import Role, issue_token
from tests.conftest import auth, new_wallet


def headers(settings: Settings, role: Role, sub: str, key: bool = True) -> dict[str, str]:
    return auth(issue_token(settings, sub=sub, role=role), uuid.uuid4().hex if key else None)


async def make_plan(client: httpx.AsyncClient, settings: Settings, **fields: Any) -> dict[str, Any]:
    body = {
        "code": f"p{uuid.uuid4().hex[:10]}",
        "name": "Pro",
        "price_credits": 100,
        "interval_unit": "month",
        "grace_period_seconds": 7 * 86400,
        "dunning_offsets_seconds": [86400, 3 * 86400],
        **fields,
    }
    r = await client.post(
        "/v1/subscription-plans",
        json=body,
        headers=headers(settings, Role.finance_admin, "finance-1"),
    )
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


@dataclass
class Member:
    sub: str
    wallet: Wallet

    def headers(self, settings: Settings, key: bool = True) -> dict[str, str]:
        return headers(settings, Role.member, self.sub, key)


async def member(engine: AsyncEngine, credits: int) -> Member:
    sub = f"member-{uuid.uuid4().hex}"
    return Member(sub, await new_wallet(engine, credits, sub=sub))


async def subscribe(
    client: httpx.AsyncClient, settings: Settings, who: Member, plan_code: str
) -> dict[str, Any]:
    r = await client.post(
        "/v1/subscriptions", json={"plan_code": plan_code}, headers=who.headers(settings)
    )
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


async def wallet(engine: AsyncEngine, wallet_id: uuid.UUID) -> Wallet:
    return await in_transaction(engine, lambda c: ws.get_wallet(c, wallet_id))


async def grant(engine: AsyncEngine, wallet_id: uuid.UUID, credits: int) -> None:
    await in_transaction(
        engine,
        lambda c: ws.grant_credits(
            c,
            wallet_id=wallet_id,
            credits=credits,
            source=LotSource.promotional,
            idempotency_key=f"test-grant:{uuid.uuid4()}",
            reason="top-up",
        ),
    )


async def periods(engine: AsyncEngine, sid: uuid.UUID) -> list[subs.Period]:
    return await in_transaction(engine, lambda c: subs.periods(c, sid))


async def get(engine: AsyncEngine, sid: uuid.UUID) -> subs.Subscription:
    return await in_transaction(engine, lambda c: subs.get(c, sid))


async def charges(engine: AsyncEngine, sid: uuid.UUID) -> list[tuple[int, str, int]]:
    """(period, kind, credits) of every charge, and each charge's hold captured exactly."""
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text("""
            SELECT c.period_number, c.kind, c.credits, h.status, h.captured_credits
              FROM subscription_charges c JOIN wallet_holds h ON h.id = c.hold_id
             WHERE c.subscription_id = :s
             ORDER BY c.period_number, c.kind, c.created_at, c.id"""),
                {"s": sid},
            )
        ).all()
    assert all(r.status == "captured" and r.captured_credits == r.credits for r in rows)
    return [(r.period_number, r.kind, r.credits) for r in rows]


async def events(engine: AsyncEngine, sid: uuid.UUID) -> list[tuple[str, dict[str, Any]]]:
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text("""SELECT event_type, data FROM billing_events
                         WHERE data->>'subscription_id' = :s ORDER BY id"""),
                {"s": str(sid)},
            )
        ).all()
    return [
        (r.event_type, r.data if isinstance(r.data, dict) else json.loads(r.data)) for r in rows
    ]


async def revenue_of_capture(engine: AsyncEngine, capture_key: str) -> int:
    """Paise the capture journal moved into platform revenue (credit-normal: minus its legs)."""
    async with engine.connect() as conn:
        value = (
            await conn.execute(
                text("""SELECT -coalesce(sum(e.amount), 0) FROM ledger_journals j
                          JOIN ledger_entries e ON e.journal_id = j.id
                         WHERE j.idempotency_key = :k AND e.account_id = :rev"""),
                {"k": f"wallet:{capture_key}", "rev": House.PLATFORM_REVENUE},
            )
        ).scalar_one()
    return int(value)


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value)
