"""Steps the subscription tests share: a sandbox of their own (they move its clock by days,
which must not age the other suites' orders), plans, mandates approved on the hosted page,
the clock, and the subscription webhooks that reached the receiver."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Iterator
from datetime import date, datetime, timedelta
from typing import Any

import httpx
import pytest

from commdesk_billing.gateway.sandbox import create_sandbox_app
from commdesk_billing.gateway.signature import verify
from commdesk_billing.security.timestamps import IST
from tests.gateway.sandbox.conftest import AUTH, CLIENT_SECRET, sandbox_config, unique
from tests.gateway.sandbox.servers import Received, Receiver, ServerThread


@pytest.fixture(scope="module")
def subs_url() -> Iterator[str]:
    server = ServerThread(create_sandbox_app(sandbox_config())).start()
    yield server.url
    server.stop()


@pytest.fixture
async def subs(subs_url: str, receiver: Receiver) -> AsyncIterator[httpx.AsyncClient]:
    """A PG client of the subscription sandbox whose webhooks go to a hook of this test
    (`client.hook`)."""
    async with httpx.AsyncClient(base_url=subs_url, headers=AUTH, timeout=10) as client:
        name = unique("subs")
        url = receiver.hook(name)
        answer = await client.patch("/_sandbox/subscriptions/settings", json={"webhook_url": url})
        assert answer.status_code == 200, answer.text
        client.hook = name  # type: ignore[attr-defined]
        yield client


async def create_plan(
    api: httpx.AsyncClient, *, max_amount: Any = 2000, plan_type: str = "ON_DEMAND", **extra: Any
) -> dict[str, Any]:
    body = {
        "plan_id": unique("plan"),
        "plan_name": "Auto recharge",
        "plan_type": plan_type,
        "plan_currency": "INR",
        "plan_max_amount": max_amount,
    } | extra
    answer = await api.post("/pg/plans", json=body)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def subscription_body(plan_id: str | None = None, **extra: Any) -> dict[str, Any]:
    plan: dict[str, Any] = (
        {"plan_id": plan_id}
        if plan_id
        else {"plan_name": "inline", "plan_type": "ON_DEMAND", "plan_max_amount": 20000}
    )
    return {
        "subscription_id": unique("sub"),
        "customer_details": {
            "customer_name": "Asha Rao",
            "customer_email": "asha@example.com",
            "customer_phone": "9999999999",
        },
        "plan_details": plan,
        "authorization_details": {
            "authorization_amount": 1,
            "authorization_amount_refund": True,
            "payment_methods": ["upi", "card"],
        },
        "subscription_meta": {"return_url": "https://merchant.example/mandates/return"},
    } | extra


async def create_subscription(api: httpx.AsyncClient, **extra: Any) -> dict[str, Any]:
    answer = await api.post("/pg/subscriptions", json=subscription_body(**extra))
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


async def hosted(
    api: httpx.AsyncClient, session_id: str, method: str, outcome: str, status: int = 200
) -> str:
    """The payer on the hosted page: GET it, then post its form."""
    page = await api.get(
        "/pg/view/subscriptions/authorize",
        params={"subscription_session_id": session_id},
        headers={"x-client-id": "", "x-client-secret": ""},
    )
    assert page.status_code == 200, page.text
    assert 'id="authorize-form"' in page.text
    form = {"subscription_session_id": session_id, "payment_method": method, "outcome": outcome}
    answer = await api.post("/pg/view/subscriptions/authorize", data=form)
    assert answer.status_code == status, answer.text
    return answer.text


async def active_subscription(
    api: httpx.AsyncClient, method: str = "upi", **extra: Any
) -> dict[str, Any]:
    sub = await create_subscription(api, **extra)
    await hosted(api, sub["subscription_session_id"], method, "approve")
    return await fetch_subscription(api, sub["subscription_id"])


async def fetch_subscription(api: httpx.AsyncClient, subscription_id: str) -> dict[str, Any]:
    answer = await api.get(f"/pg/subscriptions/{subscription_id}")
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


async def fetch_payment(
    api: httpx.AsyncClient, subscription_id: str, payment_id: str
) -> dict[str, Any]:
    answer = await api.get(f"/pg/subscriptions/{subscription_id}/payments/{payment_id}")
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


async def now(api: httpx.AsyncClient) -> datetime:
    answer = await api.get("/_sandbox/clock")
    return datetime.fromisoformat(answer.json()["now"]).astimezone(IST)


async def advance(api: httpx.AsyncClient, seconds: float) -> datetime:
    answer = await api.post("/_sandbox/clock", json={"advance_seconds": seconds})
    assert answer.status_code == 200, answer.text
    return datetime.fromisoformat(answer.json()["now"]).astimezone(IST)


async def advance_to_hour(api: httpx.AsyncClient, hour: int, minute: int = 0) -> datetime:
    """Move the clock forward to the next hour:minute IST."""
    current = await now(api)
    target = current.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if target <= current:
        target += timedelta(days=1)
    return await advance(api, (target - current).total_seconds() + 1)


def earliest_day(moment: datetime) -> date:
    local = moment.astimezone(IST)
    return local.date() + timedelta(days=1 if local.hour < 21 else 2)


def day_text(day: date) -> str:
    return datetime(day.year, day.month, day.day, 10, tzinfo=IST).isoformat()


async def charge(
    api: httpx.AsyncClient,
    subscription_id: str,
    *,
    amount: Any = 500,
    schedule: date | None = None,
    status: int = 200,
    **extra: Any,
) -> dict[str, Any]:
    if schedule is None:
        schedule = earliest_day(await now(api))
    body = {
        "subscription_id": subscription_id,
        "payment_id": unique("chg"),
        "payment_type": "CHARGE",
        "payment_amount": amount,
        "payment_schedule_date": day_text(schedule),
    } | extra
    answer = await api.post("/pg/subscriptions/pay", json=body)
    assert answer.status_code == status, answer.text
    return dict(answer.json())


def signed(hook: Received) -> dict[str, Any]:
    """A webhook whose signature over the exact bytes is the PG secret's (§12.8)."""
    headers = hook.headers
    assert headers["x-webhook-version"] == "2025-01-01"
    assert len(headers["x-idempotency-key"]) == 44
    assert verify(
        [CLIENT_SECRET], headers["x-webhook-timestamp"], hook.body, headers["x-webhook-signature"]
    )
    return dict(json.loads(hook.body))


def events(receiver: Receiver, name: str, subscription_id: str) -> list[tuple[str, dict[str, Any]]]:
    """(type, data) of each webhook about `subscription_id`, in arrival order."""
    out = []
    for hook in receiver.got(name):
        body = signed(hook)
        data = body["data"]
        sub_id = data.get("subscription_id") or data["subscription_details"]["subscription_id"]
        if sub_id == subscription_id:
            out.append((body["type"], data))
    return out


async def wait_events(
    receiver: Receiver, name: str, subscription_id: str, count: int
) -> list[tuple[str, dict[str, Any]]]:
    """At least `count` webhooks about the subscription (delivery is real HTTP, not timed)."""
    deadline = time.monotonic() + 5
    while True:
        got = events(receiver, name, subscription_id)
        if len(got) >= count:
            return got
        assert time.monotonic() < deadline, f"{len(got)} webhooks, wanted {count}: {got}"
        await asyncio.sleep(0.02)


def types(got: list[tuple[str, dict[str, Any]]]) -> list[str]:
    return [t for t, _ in got]


AMOUNT = re.compile(rb'"payment_amount":\d+\.\d{2}[,}]')
