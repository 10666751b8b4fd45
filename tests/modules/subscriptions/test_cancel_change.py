"""Cancelling (at period end, now) and changing plan (an upgrade charged its prorated
difference now, a downgrade at renewal), and who may do each."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from commdesk_billing.config import Settings
from commdesk_billing.errors import InvalidAmount
from commdesk_billing.modules.subscriptions.jobs import renew_subscriptions
from commdesk_billing.modules.subscriptions.model import whole_seconds
from commdesk_billing.modules.subscriptions.proration import upgrade_charge
from commdesk_billing.money import half_up
from commdesk_billing.problems import MEDIA_TYPE
from commdesk_billing.security.jwt import Role
from tests.modules.subscriptions.helpers import (
    charges,
    events,
    get,
    headers,
    make_plan,
    member,
    periods,
    subscribe,
    ts,
    wallet,
)

S = timedelta(seconds=1)


def _problem(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == MEDIA_TYPE
    assert r.json()["code"] == code, r.json()


async def test_cancel_at_period_end_runs_out_the_paid_period(
    client: httpx.AsyncClient, settings: Settings, engine: AsyncEngine
) -> None:
    plan = await make_plan(client, settings, name="Pro", price_credits=100)
    who = await member(engine, 1000)
    out = await subscribe(client, settings, who, plan["code"])
    sid = uuid.UUID(out["id"])
    end = ts(out["current_period_end"])
    r = await client.post(f"/v1/subscriptions/{sid}/cancel", json={}, headers=who.headers(settings))
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["cancel_at_period_end"]) == ("active", True)
    assert await events(engine, sid) == [
        (
            "subscription.cancelled",
            {
                "subscription_id": str(sid),
                "user_id": str(who.wallet.owner_id),
                "user_ref": who.sub,
                "plan_name": "Pro",
                "ends_at": end.isoformat(),
            },
        )
    ]
    # Still active until the end; then it ends, unrenewed, at the period's end.
    before = await renew_subscriptions(engine, only=[sid], at=end - S)
    assert str(sid) not in before.outcomes
    report = await renew_subscriptions(engine, only=[sid], at=end + timedelta(days=3))
    assert report.outcomes[str(sid)] == ["ended"]
    sub = await get(engine, sid)
    assert (sub.status.value, sub.ended_at) == ("cancelled", end)
    assert len(await periods(engine, sid)) == 1
    assert await charges(engine, sid) == [(1, "period", 100)]
    assert (await wallet(engine, who.wallet.id)).available_credits == 900
    assert len(await events(engine, sid)) == 1  # announced once, when asked


async def test_cancel_now_ends_at_once_and_credits_nothing_back(
    client: httpx.AsyncClient, settings: Settings, engine: AsyncEngine
) -> None:
    plan = await make_plan(client, settings, price_credits=100)
    who = await member(engine, 1000)
    out = await subscribe(client, settings, who, plan["code"])
    sid = uuid.UUID(out["id"])
    r = await client.post(
        f"/v1/subscriptions/{sid}/cancel",
        json={"at_period_end": False},
        headers=who.headers(settings),
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["status"], body["ended_reason"]) == ("cancelled", "cancelled")
    assert ts(body["ended_at"]) < ts(out["current_period_end"])
    assert (await wallet(engine, who.wallet.id)).available_credits == 900
    report = await renew_subscriptions(engine, only=[sid], at=ts(out["current_period_end"]) + S)
    assert str(sid) not in report.outcomes
    again = await client.post(
        f"/v1/subscriptions/{sid}/cancel", json={}, headers=who.headers(settings)
    )
    _problem(again, 409, "subscription_not_active")
    # Ended: the member may subscribe to the plan again.
    await subscribe(client, settings, who, plan["code"])


async def test_support_cancels_for_a_member_and_others_may_not(
    client: httpx.AsyncClient, settings: Settings, engine: AsyncEngine
) -> None:
    plan = await make_plan(client, settings, price_credits=10)
    who = await member(engine, 100)
    sid = (await subscribe(client, settings, who, plan["code"]))["id"]
    for method, path, body in (
        ("GET", f"/v1/subscriptions/{sid}", None),
        ("POST", f"/v1/subscriptions/{sid}/cancel", {}),
        ("POST", f"/v1/subscriptions/{sid}/change", {"plan_code": plan["code"]}),
    ):
        stranger = headers(settings, Role.member, "someone-else")
        r = await client.request(method, path, json=body, headers=stranger)
        _problem(r, 403, "forbidden")
    listed = await client.get(
        "/v1/subscriptions", headers=headers(settings, Role.member, "someone-else")
    )
    assert listed.json()["data"] == []
    auditor = await client.get(
        f"/v1/subscriptions/{sid}", headers=headers(settings, Role.auditor, "auditor-1")
    )
    assert auditor.status_code == 200 and auditor.json()["id"] == sid
    refused = await client.post(
        f"/v1/subscriptions/{sid}/cancel",
        json={},
        headers=headers(settings, Role.auditor, "auditor-1"),
    )
    _problem(refused, 403, "forbidden")
    done = await client.post(
        f"/v1/subscriptions/{sid}/cancel",
        json={"at_period_end": False},
        headers=headers(settings, Role.support, "support-1"),
    )
    assert done.status_code == 200 and done.json()["status"] == "cancelled"
    missing = await client.get(f"/v1/subscriptions/{uuid.uuid4()}", headers=who.headers(settings))
    _problem(missing, 404, "subscription_not_found")


def test_proration_is_exact_and_rounds_half_up() -> None:
    from datetime import UTC, datetime

    start = datetime(2026, 1, 1, tzinfo=UTC)
    end = start + timedelta(days=30)
    half = start + timedelta(days=15)
    assert upgrade_charge(300, 900, period_start=start, period_end=end, at=half) == 300
    assert upgrade_charge(300, 900, period_start=start, period_end=end, at=start) == 600
    assert upgrade_charge(300, 900, period_start=start, period_end=end, at=end) == 0
    two = start + timedelta(seconds=2)
    three = start + timedelta(seconds=3)
    # 1 credit * 1 s / 2 s = 0.5 → 1; * 1 s / 3 s = 0.33 → 0; * 2 s / 3 s = 0.67 → 1.
    assert upgrade_charge(10, 11, period_start=start, period_end=two, at=start + S) == 1
    assert upgrade_charge(10, 11, period_start=start, period_end=three, at=start + 2 * S) == 0
    assert upgrade_charge(10, 11, period_start=start, period_end=three, at=start + S) == 1
    # 7 * 1 000 001 / 2 592 000 = 2.70… → 3.
    at = end - timedelta(seconds=1_000_001)
    assert upgrade_charge(3, 10, period_start=start, period_end=end, at=at) == 3
    with pytest.raises(InvalidAmount):
        upgrade_charge(900, 300, period_start=start, period_end=end, at=half)


async def test_upgrade_charges_the_prorated_difference_now(
    client: httpx.AsyncClient, settings: Settings, engine: AsyncEngine
) -> None:
    basic = await make_plan(client, settings, price_credits=300)
    pro = await make_plan(client, settings, price_credits=900)
    who = await member(engine, 2000)
    out = await subscribe(client, settings, who, basic["code"])
    sid = uuid.UUID(out["id"])
    r = await client.post(
        f"/v1/subscriptions/{sid}/change",
        json={"plan_code": pro["code"]},
        headers=who.headers(settings),
    )
    assert r.status_code == 200, r.text
    body = r.json()
    start, end = ts(out["current_period_start"]), ts(out["current_period_end"])
    at = ts(body["effective_at"])
    want = half_up(600 * whole_seconds(end - at), whole_seconds(end - start))
    assert 0 < want <= 600
    assert (body["direction"], body["prorated_credits"]) == ("upgrade", want)
    assert (body["subscription"]["plan_code"], body["subscription"]["current_period"]) == (
        pro["code"],
        1,
    )
    assert await charges(engine, sid) == [(1, "period", 300), (1, "upgrade", want)]
    assert (await wallet(engine, who.wallet.id)).available_credits == 2000 - 300 - want
    # The renewal charges the new plan's price.
    report = await renew_subscriptions(engine, only=[sid], at=end)
    assert report.outcomes[str(sid)] == ["renewed"]
    assert [(p.plan_code, p.price_credits) for p in await periods(engine, sid)] == [
        (basic["code"], 300),
        (pro["code"], 900),
    ]
    same = await client.post(
        f"/v1/subscriptions/{sid}/change",
        json={"plan_code": pro["code"]},
        headers=who.headers(settings),
    )
    _problem(same, 409, "plan_change_refused")


async def test_downgrade_takes_over_at_renewal_with_nothing_charged_now(
    client: httpx.AsyncClient, settings: Settings, engine: AsyncEngine
) -> None:
    pro = await make_plan(client, settings, price_credits=900)
    basic = await make_plan(client, settings, price_credits=300)
    yearly = await make_plan(client, settings, price_credits=100, interval_unit="year")
    who = await member(engine, 2000)
    out = await subscribe(client, settings, who, pro["code"])
    sid = uuid.UUID(out["id"])
    r = await client.post(
        f"/v1/subscriptions/{sid}/change",
        json={"plan_code": basic["code"]},
        headers=who.headers(settings),
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["direction"], body["prorated_credits"]) == ("downgrade", 0)
    assert body["effective_at"] == out["current_period_end"]
    assert (body["subscription"]["plan_code"], body["subscription"]["next_plan_code"]) == (
        pro["code"],
        basic["code"],
    )
    assert (await wallet(engine, who.wallet.id)).available_credits == 1100
    other = await client.post(
        f"/v1/subscriptions/{sid}/change",
        json={"plan_code": yearly["code"]},
        headers=who.headers(settings),
    )
    _problem(other, 409, "plan_change_refused")

    await renew_subscriptions(engine, only=[sid], at=ts(out["current_period_end"]))
    sub = await get(engine, sid)
    assert (sub.plan_code, sub.next_plan_code, sub.current_period) == (basic["code"], None, 2)
    assert await charges(engine, sid) == [(1, "period", 900), (2, "period", 300)]
    assert (await wallet(engine, who.wallet.id)).available_credits == 800


async def test_a_change_to_a_plan_already_held_is_refused(
    client: httpx.AsyncClient, settings: Settings, engine: AsyncEngine
) -> None:
    cheap = await make_plan(client, settings, price_credits=100)
    dear = await make_plan(client, settings, price_credits=200)
    who = await member(engine, 1000)
    first = await subscribe(client, settings, who, dear["code"])
    await subscribe(client, settings, who, cheap["code"])
    for target in (cheap, dear):
        r = await client.post(
            f"/v1/subscriptions/{first['id']}/change",
            json={"plan_code": target["code"]},
            headers=who.headers(settings),
        )
        _problem(r, 409, "plan_change_refused")
    assert (await wallet(engine, who.wallet.id)).available_credits == 700


async def test_my_subscriptions_are_paged_newest_first(
    client: httpx.AsyncClient, settings: Settings, engine: AsyncEngine
) -> None:
    who = await member(engine, 1000)
    made = []
    for _ in range(3):
        plan = await make_plan(client, settings, price_credits=10)
        made.append((await subscribe(client, settings, who, plan["code"]))["id"])
    first = await client.get("/v1/subscriptions?limit=2", headers=who.headers(settings))
    assert first.status_code == 200, first.text
    page = first.json()
    assert [s["id"] for s in page["data"]] == made[::-1][:2]
    second = await client.get(
        f"/v1/subscriptions?limit=2&cursor={page['next_cursor']}", headers=who.headers(settings)
    )
    assert [s["id"] for s in second.json()["data"]] == made[:1]
    assert second.json()["next_cursor"] is None
    bad = await client.get("/v1/subscriptions?cursor=bm9wZQ", headers=who.headers(settings))
    _problem(bad, 422, "invalid_cursor")


async def test_staff_cancellations_are_audited(
    client: httpx.AsyncClient, settings: Settings, engine: AsyncEngine
) -> None:
    from sqlalchemy import text

    plan = await make_plan(client, settings, price_credits=10)
    who = await member(engine, 100)
    sid = (await subscribe(client, settings, who, plan["code"]))["id"]
    r = await client.post(
        f"/v1/subscriptions/{sid}/cancel",
        json={"at_period_end": True},
        headers=headers(settings, Role.support, "support-7"),
    )
    assert r.status_code == 200, r.text
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text("""SELECT actor_sub, action, details FROM audit_logs
                         WHERE target_type = 'subscription' AND target_id = :s"""),
                {"s": sid},
            )
        ).all()
    assert [(x.actor_sub, x.action, x.details) for x in rows] == [
        ("support-7", "subscription.cancel", {"at_period_end": True})
    ]


async def test_an_upgrade_the_wallet_cannot_pay_changes_nothing(
    client: httpx.AsyncClient, settings: Settings, engine: AsyncEngine
) -> None:
    basic = await make_plan(client, settings, price_credits=100)
    pro = await make_plan(client, settings, price_credits=100_000)
    who = await member(engine, 150)
    sid = (await subscribe(client, settings, who, basic["code"]))["id"]
    r = await client.post(
        f"/v1/subscriptions/{sid}/change",
        json={"plan_code": pro["code"]},
        headers=who.headers(settings),
    )
    _problem(r, 409, "insufficient_credits")
    sub = await get(engine, uuid.UUID(sid))
    assert (sub.plan_code, sub.next_plan_code) == (basic["code"], None)
    assert await charges(engine, uuid.UUID(sid)) == [(1, "period", 100)]
    assert (await wallet(engine, who.wallet.id)).available_credits == 50


async def test_hostile_subscription_bodies_are_problems(
    client: httpx.AsyncClient, settings: Settings, engine: AsyncEngine
) -> None:
    plan = await make_plan(client, settings, price_credits=10)
    who = await member(engine, 100)
    sid = (await subscribe(client, settings, who, plan["code"]))["id"]
    for path, body in (
        ("/v1/subscriptions", {"plan_code": "Bad Code"}),
        ("/v1/subscriptions", {"plan_code": 5}),
        ("/v1/subscriptions", {"plan_code": plan["code"], "wallet_id": str(uuid.uuid4())}),
        ("/v1/subscriptions", {}),
        (f"/v1/subscriptions/{sid}/cancel", {"at_period_end": "yes"}),
        (f"/v1/subscriptions/{sid}/cancel", {"at_period_end": 0}),
        (f"/v1/subscriptions/{sid}/change", {"plan_code": "x" * 41}),
        (f"/v1/subscriptions/{sid}/change", {"plan_code": plan["code"], "credits": 1}),
    ):
        r = await client.post(path, json=body, headers=who.headers(settings))
        _problem(r, 422, "validation_error")
    missing = await client.post(
        "/v1/subscriptions", json={"plan_code": "no-such-plan"}, headers=who.headers(settings)
    )
    _problem(missing, 404, "subscription_plan_not_found")
    no_key = await client.post(
        "/v1/subscriptions",
        json={"plan_code": plan["code"]},
        headers=who.headers(settings, key=False),
    )
    _problem(no_key, 400, "idempotency_key_required")
    assert (await get(engine, uuid.UUID(sid))).status.value == "active"
