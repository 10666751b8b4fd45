"""What the INR subscriptions' tests share: an approved mandate through the sandbox's hosted
page, an INR plan, the sandbox's clock, the renewal job run at the sandbox's time, and reads
of the rows, the books and the billing log. Time moves only by moving the sandbox's clock."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

from commdesk_billing.gateway.subscriptions import SubscriptionsClient
from commdesk_billing.modules.ledger.verify import VerifyReport, verify_ledger
from commdesk_billing.modules.payments.jobs import sync_open_payments
from commdesk_billing.modules.subscriptions import invariants
from commdesk_billing.modules.subscriptions.jobs import renew_subscriptions
from commdesk_billing.modules.subscriptions.renewal import RenewalReport
from commdesk_billing.security.jwt import Role
from tests.harness.stack import Stack

HOUR = 3600
DAY = 86400
PRICE = 29_900  # ₹299, GST inclusive


def auth(tok: str, key: bool = False) -> dict[str, str]:
    h = {"Authorization": f"Bearer {tok}"}
    if key:
        h["Idempotency-Key"] = uuid.uuid4().hex
    return h


async def until(probe: Callable[[], Awaitable[Any]], wanted: Any, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = await probe()
        if last == wanted:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"stayed {last!r}, wanted {wanted!r}")


async def mandate(stack: Stack, tok: str, max_paise: int = 50_000) -> dict[str, Any]:
    """A mandate set up by the member and approved on the hosted page (UPI), active."""
    r = await stack.api.post(
        "/v1/mandates",
        json={
            "max_amount_paise": max_paise,
            "customer_phone": "9876543210",
            "customer_email": "member@example.com",
        },
        headers=auth(tok, key=True),
    )
    assert r.status_code == 201, r.text
    url = r.json()["authorization_url"]
    session = parse_qs(urlsplit(url).query)["subscription_session_id"][0]
    page = await stack.sandbox.post(
        urlsplit(url).path,
        data={"subscription_session_id": session, "payment_method": "upi", "outcome": "approve"},
    )
    assert page.status_code == 200, page.text[:300]
    mid = r.json()["id"]
    await wait_mandate(stack, tok, mid, "active")
    return dict((await stack.api.get(f"/v1/mandates/{mid}", headers=auth(tok))).json())


async def wait_mandate(stack: Stack, tok: str, mid: str, wanted: str) -> None:
    async def status() -> Any:
        return (await stack.api.get(f"/v1/mandates/{mid}", headers=auth(tok))).json()["status"]

    await until(status, wanted)


async def inr_plan(stack: Stack, **fields: Any) -> dict[str, Any]:
    body = {
        "code": f"inr{uuid.uuid4().hex[:10]}",
        "name": "Pro India",
        "currency": "INR",
        "price_paise": PRICE,
        "interval_unit": "month",
        "grace_period_seconds": 7 * DAY,
        "dunning_offsets_seconds": [DAY, 3 * DAY],
        **fields,
    }
    finance = stack.token("finance-1", Role.finance_admin)
    r = await stack.api.post("/v1/subscription-plans", json=body, headers=auth(finance, True))
    assert r.status_code == 201, r.text
    return dict(r.json())


async def subscribe(stack: Stack, tok: str, plan: dict[str, Any], mid: str) -> dict[str, Any]:
    r = await stack.api.post(
        "/v1/subscriptions",
        json={"plan_code": plan["code"], "mandate_id": mid},
        headers=auth(tok, key=True),
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


async def read(stack: Stack, tok: str, sid: str) -> dict[str, Any]:
    r = await stack.api.get(f"/v1/subscriptions/{sid}", headers=auth(tok))
    assert r.status_code == 200, r.text
    return dict(r.json())


async def sandbox_now(stack: Stack) -> datetime:
    """The sandbox's time: real time plus its offset (its text form drops the fraction)."""
    r = await stack.sandbox.get("/_sandbox/clock")
    assert r.status_code == 200, r.text
    return datetime.now(UTC) + timedelta(seconds=r.json()["offset_seconds"])


async def advance(stack: Stack, seconds: float) -> datetime:
    r = await stack.sandbox.post("/_sandbox/clock", json={"advance_seconds": seconds})
    assert r.status_code == 200, r.text
    return await sandbox_now(stack)


async def advance_to(stack: Stack, at: datetime) -> datetime:
    now = await sandbox_now(stack)
    if at > now:
        return await advance(stack, (at - now).total_seconds())
    return now


async def renew(stack: Stack, sid: str) -> RenewalReport:
    """The scheduler's renewal job, at the sandbox's time, for this subscription only."""
    return await renew_subscriptions(
        stack.engine, stack.settings, at=await sandbox_now(stack), only=[uuid.UUID(sid)]
    )


async def attempts(stack: Stack, sid: str) -> list[tuple[int, int, str, str | None]]:
    """(period, attempt, status, payment status) of every charge raised for the subscription."""
    out = await stack.scalar(
        """SELECT coalesce(json_agg(json_build_array(c.period_number, c.attempt, c.status,
                                                     p.status)
                                    ORDER BY c.period_number, c.attempt), '[]')
             FROM subscription_mandate_charges c LEFT JOIN payments p ON p.id = c.payment_id
            WHERE c.subscription_id = :s""",
        s=uuid.UUID(sid),
    )
    rows = out if isinstance(out, list) else json.loads(out)
    return [tuple(r) for r in rows]  # type: ignore[misc]


async def payment_of(stack: Stack, sid: str, period: int, attempt: int) -> str:
    pid = await stack.scalar(
        """SELECT payment_id::text FROM subscription_mandate_charges
            WHERE subscription_id = :s AND period_number = :n AND attempt = :a""",
        s=uuid.UUID(sid),
        n=period,
        a=attempt,
    )
    assert pid is not None
    return str(pid)


async def cashfree_charges(client: SubscriptionsClient, subscription_id: str) -> list[Any]:
    """The CHARGEs Cashfree holds on the mandate."""
    return [p for p in await client.list_payments(subscription_id) if p.payment_type == "CHARGE"]


async def debit(stack: Stack, tok: str, pid: str) -> dict[str, Any]:
    """The pre-debit notice is seen, then the clock moves past the 24 h rule and the debit;
    the charge is verified on Cashfree's API (its webhook, or the status sync) and ends."""

    async def notified() -> bool:
        return (await stack.payment(tok, pid))["pdn_at"] is not None

    await until(notified, True)
    await advance(stack, 23 * HOUR)
    early = await stack.payment(tok, pid)
    assert early["status"] == "ACTIVE", early  # not before 24 h after the notice

    async def ended() -> Any:
        await sync_open_payments(stack.engine, stack.settings)
        status = (await stack.payment(tok, pid))["status"]
        return status if status in ("CREDITED", "FAILED", "CANCELLED", "REVIEW") else None

    # Past the debit and UPI's three hourly retries. The debit is due 24 h after the notice,
    # but not before its schedule date's start: a charge raised after 20:45 IST (on the
    # sandbox's clock, which the tests move) is scheduled for T+2, up to two days later.
    for _ in range(9):
        await advance(stack, 6 * HOUR)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if await ended() is not None:
                return await stack.payment(tok, pid)
            await asyncio.sleep(0.2)
    return await stack.payment(tok, pid)


async def events(stack: Stack, sid: str) -> list[tuple[str, dict[str, Any]]]:
    raw = await stack.scalar(
        """SELECT coalesce(json_agg(json_build_array(event_type, data) ORDER BY id), '[]')
             FROM billing_events WHERE data->>'subscription_id' = :s""",
        s=sid,
    )
    rows = raw if isinstance(raw, list) else json.loads(raw)
    return [(r[0], r[1] if isinstance(r[1], dict) else json.loads(r[1])) for r in rows]


async def verify(stack: Stack) -> VerifyReport:
    """The subscriptions' `ledger verify` checks on the stack's database."""
    return await verify_ledger(stack.engine, invariants.CHECKS)


async def books_agree(stack: Stack) -> None:
    report = await verify(stack)
    assert report.ok, [str(f) for f in report.findings]


def plus(at: str, seconds: float) -> datetime:
    return datetime.fromisoformat(at) + timedelta(seconds=seconds)
