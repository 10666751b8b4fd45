"""Helpers of the auto-recharge-on-a-mandate tests: stacks whose sandbox sends its
Subscriptions webhooks to our receiver, a member with an approved mandate, debits over HTTP,
the sandbox's clock, and what the module decided."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from datetime import time as dtime
from typing import Any

from commdesk_billing.security.jwt import Role
from commdesk_billing.security.timestamps import IST
from tests.harness.stack import FAULTS_OFF, Stack, StackFactory
from tests.modules.mandates.helpers import advance, sandbox_now

SUBS_HOOK = "/v1/webhooks/cashfree/subscriptions"
HOUR = 3600
PHONE = "9876543210"


def auth(tok: str, key: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}", **({"Idempotency-Key": key} if key else {})}


async def mandate_stack(stack_factory: StackFactory, **overrides: Any) -> Stack:
    """A stack of its own (its sandbox's clock may be moved by days), its Subscriptions
    webhooks pointed at our receiver."""
    stack = await stack_factory(**overrides)
    await point_webhooks(stack)
    return stack


async def point_webhooks(stack: Stack) -> None:
    r = await stack.sandbox.patch(
        "/_sandbox/subscriptions/settings", json={"webhook_url": stack.api_url + SUBS_HOOK}
    )
    assert r.status_code == 200, r.text
    await stack.faults(**FAULTS_OFF)


async def until(probe: Callable[[], Awaitable[Any]], wanted: Any, timeout_s: float = 30) -> Any:
    """Poll `probe` until it answers `wanted` (the worker takes a moment); never a timing
    assertion: the test fails only when it never gets there."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = await probe()
        if last == wanted:
            return last
        await asyncio.sleep(0.1)
    raise AssertionError(f"stayed {last!r}, wanted {wanted!r}")


async def grant(stack: Stack, wallet_id: str, credits: int) -> None:
    finance = stack.token("finance-1", Role.finance_admin)
    r = await stack.api.post(
        f"/v1/wallets/{wallet_id}/grants",
        json={"credits": credits, "reason": "welcome"},
        headers=auth(finance, uuid.uuid4().hex),
    )
    assert r.status_code == 201, r.text


async def debit(stack: Stack, tok: str, wallet_id: str, credits: int) -> None:
    r = await stack.api.post(
        f"/v1/wallets/{wallet_id}/debits",
        json={"credits": credits, "reason": "calls"},
        headers=auth(tok, uuid.uuid4().hex),
    )
    assert r.status_code == 201, r.text


async def member(stack: Stack, credits: int) -> tuple[str, str]:
    """A member's token and wallet id, with `credits` granted."""
    tok = stack.token(f"arm-{uuid.uuid4().hex}")
    wallet_id = str((await stack.wallet(tok))["id"])
    if credits:
        await grant(stack, wallet_id, credits)
    return tok, wallet_id


async def mandate(stack: Stack, tok: str, wanted: str = "active", id_: str | None = None) -> Any:
    async def status() -> str:
        r = await stack.api.get(f"/v1/mandates/{id_}", headers=auth(tok))
        assert r.status_code == 200, r.text
        return str(r.json()["status"])

    await until(status, wanted)
    r = await stack.api.get(f"/v1/mandates/{id_}", headers=auth(tok))
    return r.json()


async def active_mandate(stack: Stack, tok: str, max_paise: int = 50_000) -> dict[str, Any]:
    """Set up through our API, approved by the payer on the sandbox (UPI AutoPay), seen
    active by our API (the worker takes Cashfree's webhook)."""
    m = await approved_mandate(stack, tok, max_paise)
    return dict(await mandate(stack, tok, "active", m["id"]))


async def approved_mandate(stack: Stack, tok: str, max_paise: int = 50_000) -> dict[str, Any]:
    """Set up through our API and approved by the payer on the sandbox (UPI AutoPay): the
    mandate as our API created it (it learns of the approval from the webhook or a refresh)."""
    r = await stack.api.post(
        "/v1/mandates",
        json={
            "max_amount_paise": max_paise,
            "customer_phone": PHONE,
            "customer_email": "member@example.com",
        },
        headers=auth(tok, uuid.uuid4().hex),
    )
    assert r.status_code == 201, r.text
    m = r.json()
    r = await stack.sandbox.post(
        f"/_sandbox/subscriptions/{m['subscription_id']}/authorize",
        json={"payment_method": "upi", "outcome": "approve"},
    )
    assert r.status_code == 200, r.text
    return dict(m)


async def enable(
    stack: Stack, tok: str, wallet_id: str, mandate_id: str | None, **fields: Any
) -> dict[str, Any]:
    body = {"enabled": True, "pack_code": "pack_150", "customer_phone": PHONE, **fields}
    if mandate_id is not None:
        body["mandate_id"] = mandate_id
    r = await stack.api.put(f"/v1/wallets/{wallet_id}/auto-recharge", json=body, headers=auth(tok))
    assert r.status_code == 200, r.text
    return dict(r.json())


async def decisions(stack: Stack, tok: str, wallet_id: str) -> list[dict[str, Any]]:
    """The decision log, oldest first, without the member's own `configured` lines."""
    r = await stack.api.get(
        f"/v1/wallets/{wallet_id}/auto-recharge/events?limit=200", headers=auth(tok)
    )
    assert r.status_code == 200, r.text
    return [d for d in reversed(r.json()["data"]) if d["decision"] != "configured"]


async def until_decision(
    stack: Stack, tok: str, wallet_id: str, decision: str, reason: str | None = "*"
) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    seen: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        seen = await decisions(stack, tok, wallet_id)
        for d in seen:
            if d["decision"] == decision and (reason == "*" or d["reason"] == reason):
                return d
        await asyncio.sleep(0.1)
    raise AssertionError(f"no {decision}/{reason} decision: {seen}")


async def recharges(stack: Stack, wallet_id: str) -> list[Any]:
    async with stack.engine.connect() as conn:
        from sqlalchemy import text

        return list(
            (
                await conn.execute(
                    text(
                        "SELECT id, status, reason, payment_id, credits, created_at"
                        " FROM auto_recharges WHERE wallet_id = :w ORDER BY created_at"
                    ),
                    {"w": uuid.UUID(wallet_id)},
                )
            ).all()
        )


def debit_time(payment: dict[str, Any]) -> datetime:
    """When the sandbox debits a notified charge: 24 h after the notice, and not before
    00:00 IST of its schedule date (cashfree.md §12.5)."""
    pdn = datetime.fromisoformat(payment["pdn_at"])
    day = datetime.fromisoformat(payment["schedule_date"]).date()
    return max(pdn + timedelta(hours=24), datetime.combine(day, dtime(), IST))


async def advance_to(stack: Stack, at: datetime) -> None:
    now = await sandbox_now(stack)
    if at > now:
        await advance(stack, (at - now).total_seconds())


async def sandbox_charges(stack: Stack, subscription_id: str) -> list[dict[str, Any]]:
    """The CHARGE payments Cashfree (the sandbox) holds for the subscription."""
    r = await stack.sandbox.get(f"/pg/subscriptions/{subscription_id}/payments")
    assert r.status_code == 200, r.text
    return [p for p in r.json() if p.get("payment_type") == "CHARGE"]


async def announced(stack: Stack, message_type: str, key: str, value: str) -> list[Any]:
    found = await stack.scalar(
        "SELECT json_agg(body::json -> 'payload' ORDER BY id) FROM outbox "
        "WHERE message_type = :t AND body::json -> 'payload' ->> :k = :v",
        t=message_type,
        k=key,
        v=value,
    )
    return list(found or [])
