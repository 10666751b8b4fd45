"""Helpers shared by the mandates' tests: a mandate set up through our API and approved on
the sandbox's hosted page, the sandbox's clock, and a charge whose CHARGE call's answer was
lost (the payment row left CREATED)."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import date, datetime, timedelta
from datetime import time as clock_time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from commdesk_billing.errors import GatewayUnavailable
from commdesk_billing.gateway.subscriptions import SubscriptionsClient
from commdesk_billing.modules.mandates import service as mandates
from commdesk_billing.modules.payments import repository as payments_repo
from commdesk_billing.modules.payments.model import Payment
from commdesk_billing.security.timestamps import IST
from tests.harness.stack import Stack


def auth(tok: str, key: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {tok}"}
    if key is not None:
        headers["Idempotency-Key"] = key
    return headers


async def create(
    stack: Stack, tok: str, *, max_paise: int = 50_000, key: str | None = None
) -> httpx.Response:
    return await stack.api.post(
        "/v1/mandates",
        json={
            "max_amount_paise": max_paise,
            "customer_phone": "9876543210",
            "customer_email": "member@example.com",
        },
        headers=auth(tok, key or uuid.uuid4().hex),
    )


async def get(stack: Stack, tok: str, mandate_id: str) -> dict[str, Any]:
    r = await stack.api.get(f"/v1/mandates/{mandate_id}", headers=auth(tok))
    assert r.status_code == 200, r.text
    return dict(r.json())


async def wait(stack: Stack, tok: str, mandate_id: str, wanted: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        last = await get(stack, tok, mandate_id)
        if last["status"] == wanted:
            return last
        await asyncio.sleep(0.1)
    raise AssertionError(f"mandate stayed {last.get('status')}, wanted {wanted}: {last}")


async def authorize(stack: Stack, mandate: dict[str, Any], method: str, outcome: str) -> str:
    """What the member does on the hosted page: open it, pick a method and an outcome."""
    url = mandate["authorization_url"]
    page = await stack.sandbox.get(url)
    assert page.status_code == 200 and "authorize-form" in page.text, page.text[:300]
    session = parse_qs(urlsplit(url).query)["subscription_session_id"][0]
    r = await stack.sandbox.post(
        urlsplit(url).path,
        data={"subscription_session_id": session, "payment_method": method, "outcome": outcome},
    )
    assert r.status_code == 200, r.text[:300]
    return r.text


async def active(stack: Stack, tok: str, max_paise: int = 50_000) -> dict[str, Any]:
    r = await create(stack, tok, max_paise=max_paise)
    assert r.status_code == 201, r.text
    await authorize(stack, r.json(), "upi", "approve")
    return await wait(stack, tok, r.json()["id"], "active")


async def sandbox_now(stack: Stack) -> datetime:
    r = await stack.sandbox.get("/_sandbox/clock")
    assert r.status_code == 200, r.text
    return datetime.fromisoformat(r.json()["now"])


async def advance(stack: Stack, seconds: float) -> None:
    r = await stack.sandbox.post("/_sandbox/clock", json={"advance_seconds": seconds})
    assert r.status_code == 200, r.text


def debit_time(raised: datetime, day: date | None) -> datetime:
    """When Cashfree first debits a charge raised (and notified) at `raised` for `day`: 24 h
    after the notice, not before the day starts (IST); a minute past it. The day may be T+2
    (raised near or after 21:00 IST), so a fixed 25 h is not always enough."""
    assert day is not None
    return max(raised + timedelta(hours=24), datetime.combine(day, clock_time(), IST)) + timedelta(
        minutes=1
    )


async def advance_to(stack: Stack, moment: datetime) -> None:
    await advance(stack, max(0.0, (moment - await sandbox_now(stack)).total_seconds()))


async def lost_charge(
    subs: Stack,
    subs_client: SubscriptionsClient,
    m: dict[str, Any],
    *,
    schedule: date,
    pack_code: str | None = None,
    amount_paise: int | None = None,
) -> Payment:
    """A charge on the mandate `m` (key `recharge-1`) whose CHARGE call got no answer (every
    call to Cashfree fails meanwhile): the payment row, left CREATED."""
    await subs.faults(error_rate=1.0)
    try:
        with pytest.raises(GatewayUnavailable):
            await mandates.charge(
                subs.engine,
                subs_client,
                subs.settings,
                uuid.UUID(str(m["id"])),
                key="recharge-1",
                pack_code=pack_code,
                amount_paise=amount_paise,
                schedule=schedule,
            )
    finally:
        await subs.faults(error_rate=0.0)
    pid = await subs.scalar(
        "SELECT id FROM payments WHERE subscription_id = :s", s=m["subscription_id"]
    )
    async with subs.engine.connect() as conn:
        p = await payments_repo.get(conn, pid)
    assert p is not None and p.status.value == "CREATED"
    return p
