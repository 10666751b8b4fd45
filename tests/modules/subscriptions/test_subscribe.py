"""Plans and subscribing: the first period paid from the wallet through a hold and its
capture (revenue recognized), refusals that change nothing, versions, the INR seam."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from commdesk_billing.config import Settings
from commdesk_billing.modules.subscriptions.charging import period_key
from commdesk_billing.modules.wallet import service as ws
from commdesk_billing.money import half_up
from commdesk_billing.problems import MEDIA_TYPE
from commdesk_billing.security.jwt import Role
from tests.conftest import Tx
from tests.modules.subscriptions.helpers import (
    charges,
    headers,
    make_plan,
    member,
    periods,
    revenue_of_capture,
    subscribe,
    ts,
    wallet,
)


def _problem(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == MEDIA_TYPE
    assert r.json()["code"] == code, r.json()


async def test_subscribing_pays_the_first_period_by_hold_and_capture(
    client: httpx.AsyncClient, settings: Settings, engine: AsyncEngine, tx: Tx
) -> None:
    plan = await make_plan(client, settings, price_credits=300, interval_unit="month")
    who = await member(engine, 1000)
    key = uuid.uuid4().hex
    r = await client.post(
        "/v1/subscriptions",
        json={"plan_code": plan["code"]},
        headers={**who.headers(settings), "Idempotency-Key": key},
    )
    assert r.status_code == 201, r.text
    sub = r.json()
    sid = uuid.UUID(sub["id"])
    assert sub["status"] == "active"
    assert sub["plan_code"] == plan["code"] and sub["plan_version"] == 1
    assert sub["current_period"] == 1 and sub["user_id"] == who.sub
    start, end = ts(sub["current_period_start"]), ts(sub["current_period_end"])
    assert (end.year * 12 + end.month) - (start.year * 12 + start.month) == 1
    assert [(p["number"], p["status"], p["price_credits"]) for p in sub["periods"]] == [
        (1, "paid", 300)
    ]

    w = await wallet(engine, who.wallet.id)
    assert (w.available_credits, w.locked_credits) == (700, 0)
    assert await charges(engine, sid) == [(1, "period", 300)]
    lines = await tx(lambda c: ws.list_statement(c, who.wallet.id, before_seq=None, limit=10))
    assert [(x.transaction_type.value, x.credits) for x in lines[:2]] == [
        ("capture", 300),
        ("hold", 300),
    ]
    # The 1000 credits were bought with a taxable value of 8474 paise; 300 of them consumed
    # recognize round-half-up(8474 * 300 / 1000) = 2542 paise as platform revenue.
    taxable = 1000 * 10 * 100 // 118
    assert await revenue_of_capture(engine, f"{period_key(sid, 1)}:capture") == half_up(
        taxable * 300, 1000
    )

    # The same key and body: the first answer, nothing charged again.
    again = await client.post(
        "/v1/subscriptions",
        json={"plan_code": plan["code"]},
        headers={**who.headers(settings), "Idempotency-Key": key},
    )
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == sub["id"]
    # Another key: one live subscription per plan.
    twice = await client.post(
        "/v1/subscriptions", json={"plan_code": plan["code"]}, headers=who.headers(settings)
    )
    _problem(twice, 409, "subscription_exists")
    assert (await wallet(engine, who.wallet.id)).available_credits == 700


async def test_too_few_credits_is_refused_and_changes_nothing(
    client: httpx.AsyncClient, settings: Settings, engine: AsyncEngine
) -> None:
    plan = await make_plan(client, settings, price_credits=500)
    who = await member(engine, 499)
    r = await client.post(
        "/v1/subscriptions", json={"plan_code": plan["code"]}, headers=who.headers(settings)
    )
    _problem(r, 409, "insufficient_credits")
    listed = await client.get("/v1/subscriptions", headers=who.headers(settings, key=False))
    assert listed.status_code == 200 and listed.json()["data"] == []
    w = await wallet(engine, who.wallet.id)
    assert (w.available_credits, w.locked_credits) == (499, 0)


async def test_an_inr_plan_needs_the_members_mandate_and_a_credit_plan_takes_none(
    client: httpx.AsyncClient, settings: Settings, engine: AsyncEngine
) -> None:
    plan = await make_plan(client, settings, currency="INR", price_credits=None, price_paise=29_900)
    assert (plan["currency"], plan["price_paise"], plan["price_credits"]) == ("INR", 29_900, None)
    who = await member(engine, 10_000)
    r = await client.post(
        "/v1/subscriptions", json={"plan_code": plan["code"]}, headers=who.headers(settings)
    )
    _problem(r, 422, "subscription_mandate_required")
    # A mandate that does not exist (or is not the caller's) is refused the same way.
    r = await client.post(
        "/v1/subscriptions",
        json={"plan_code": plan["code"], "mandate_id": str(uuid.uuid4())},
        headers=who.headers(settings),
    )
    _problem(r, 422, "subscription_mandate_required")
    credit_plan = await make_plan(client, settings, price_credits=100)
    r = await client.post(
        "/v1/subscriptions",
        json={"plan_code": credit_plan["code"], "mandate_id": str(uuid.uuid4())},
        headers=who.headers(settings),
    )
    _problem(r, 422, "subscription_mandate_required")
    assert (await wallet(engine, who.wallet.id)).available_credits == 10_000


async def test_a_price_change_is_a_new_version_and_the_old_stays(
    client: httpx.AsyncClient, settings: Settings, engine: AsyncEngine
) -> None:
    plan = await make_plan(client, settings, price_credits=100)
    who = await member(engine, 1000)
    sub = await subscribe(client, settings, who, plan["code"])
    v2 = await make_plan(client, settings, code=plan["code"], price_credits=150)
    assert (v2["version"], v2["price_credits"]) == (2, 150)
    listed = await client.get("/v1/subscription-plans", headers=who.headers(settings, key=False))
    assert listed.status_code == 200
    mine = [p for p in listed.json()["data"] if p["code"] == plan["code"]]
    assert [(p["version"], p["price_credits"]) for p in mine] == [(2, 150)]
    # The subscription keeps the version it bought.
    got = await client.get(f"/v1/subscriptions/{sub['id']}", headers=who.headers(settings))
    assert got.json()["plan_version"] == 1
    assert [p.price_credits for p in await periods(engine, uuid.UUID(sub["id"]))] == [100]
    # A version never changes the currency or the interval.
    r = await client.post(
        "/v1/subscription-plans",
        json={"code": plan["code"], "name": "x", "price_credits": 5, "interval_unit": "year"},
        headers=headers(settings, Role.finance_admin, "finance-1"),
    )
    _problem(r, 422, "invalid_amount")


async def test_hostile_plan_bodies_are_problems(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    base = {"code": "ok-plan", "name": "x", "price_credits": 5, "interval_unit": "month"}
    for body in (
        {**base, "price_credits": 1.5},
        {**base, "price_credits": "5"},
        {**base, "price_credits": 0},
        {**base, "interval_unit": "fortnight"},
        {**base, "code": "Has Space"},
        {**base, "price_paise": 100},
        {**base, "currency": "INR"},
        {**base, "dunning_offsets_seconds": [0]},
        {**base, "extra": 1},
        {**base, "name": "nul\u0000"},
    ):
        r = await client.post(
            "/v1/subscription-plans",
            json=body,
            headers=headers(settings, Role.finance_admin, "finance-1"),
        )
        _problem(r, 422, "validation_error")
    # Offsets beyond the grace, or not increasing: refused by the service.
    for extra in (
        {"grace_period_seconds": 100, "dunning_offsets_seconds": [200]},
        {"grace_period_seconds": 1000, "dunning_offsets_seconds": [300, 200]},
    ):
        r = await client.post(
            "/v1/subscription-plans",
            json={**base, "code": f"p{uuid.uuid4().hex[:8]}", **extra},
            headers=headers(settings, Role.finance_admin, "finance-1"),
        )
        _problem(r, 422, "invalid_amount")
