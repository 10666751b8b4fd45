"""Subscriptions in the sandbox: plans, subscriptions, the hosted mandate authorisation
(approve, decline, drop until the link expires), AUTH through `/subscriptions/pay`, the gate
(credentials, version, idempotency keys) and the signed webhooks they send (cashfree.md §12)."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import parse_qs, urlsplit

import httpx

from tests.gateway.sandbox.conftest import unique
from tests.gateway.sandbox.servers import Receiver
from tests.gateway.sandbox.subs_helpers import (
    active_subscription,
    advance,
    create_plan,
    create_subscription,
    fetch_payment,
    fetch_subscription,
    hosted,
    subs,
    subs_url,
    subscription_body,
    types,
    wait_events,
)

__all__ = ["subs", "subs_url"]  # fixtures


def _error(answer: httpx.Response, status: int, code: str) -> None:
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body["code"] == code, body
    assert set(body) == {"message", "code", "type", "help"}
    assert body["type"] == ("idempotency_error" if status == 422 else "invalid_request_error")


async def test_plan_create_fetch_and_refusals(subs: httpx.AsyncClient) -> None:
    plan = await create_plan(subs, max_amount=1500.5, plan_note="wallet top-ups")
    assert plan["plan_status"] == "ACTIVE" and plan["plan_type"] == "ON_DEMAND"
    fetched = await subs.get(f"/pg/plans/{plan['plan_id']}")
    assert fetched.status_code == 200
    assert b'"plan_max_amount":1500.50' in fetched.content  # rupees with two decimals
    again = await subs.post(
        "/pg/plans",
        json={
            "plan_id": plan["plan_id"],
            "plan_name": "x",
            "plan_type": "ON_DEMAND",
            "plan_max_amount": 10,
        },
    )
    _error(again, 409, "plan_already_exists")
    _error(await subs.get("/pg/plans/nope"), 404, "plan_does_not_exist")
    _error(await subs.post("/pg/plans", json={"plan_name": "x"}), 400, "plan_id_missing")
    periodic = {"plan_id": unique("p"), "plan_name": "m", "plan_type": "PERIODIC"}
    _error(
        await subs.post("/pg/plans", json=periodic | {"plan_max_amount": 100}),
        400,
        "plan_recurring_amount_missing",
    )
    too_much = periodic | {
        "plan_max_amount": 100,
        "plan_recurring_amount": 200,
        "plan_interval_type": "MONTH",
    }
    _error(await subs.post("/pg/plans", json=too_much), 400, "plan_recurring_amount_invalid")
    long_name = {"plan_id": unique("p"), "plan_type": "ON_DEMAND", "plan_max_amount": 1}
    _error(
        await subs.post("/pg/plans", json=long_name | {"plan_name": "n" * 41}),
        400,
        "plan_name_invalid",
    )


async def test_subscription_create_and_refusals(subs: httpx.AsyncClient) -> None:
    plan = await create_plan(subs)
    sub = await create_subscription(subs, plan_id=plan["plan_id"])
    assert sub["subscription_status"] == "INITIALIZED"
    assert sub["subscription_session_id"].startswith("subs_session_")
    auth = sub["authorisation_details"]  # British spelling in the entity (§12.3)
    assert auth["authorization_status"] == "INITIALIZED"
    assert auth["authorization_reference"] == ""  # Cashfree's "" for unset
    assert sub["plan_details"]["plan_id"] == plan["plan_id"]
    assert " " in sub["subscription_expiry_time"]  # `2036-12-07 08:00:00+05:30`
    inline = await create_subscription(subs)
    assert inline["plan_details"]["plan_type"] == "ON_DEMAND"
    dup = subscription_body(plan["plan_id"]) | {"subscription_id": sub["subscription_id"]}
    _error(await subs.post("/pg/subscriptions", json=dup), 409, "subscription_already_exists")
    body = subscription_body(plan["plan_id"])
    del body["customer_details"]["customer_email"]
    _error(await subs.post("/pg/subscriptions", json=body), 400, "customer_email_missing")
    body = subscription_body(plan["plan_id"])
    del body["subscription_id"]
    _error(await subs.post("/pg/subscriptions", json=body), 400, "subscription_id_missing")
    _error(
        await subs.post("/pg/subscriptions", json=subscription_body("no_such_plan")),
        404,
        "plan_does_not_exist",
    )
    bad = subscription_body(plan["plan_id"], subscription_id="a/b")
    _error(await subs.post("/pg/subscriptions", json=bad), 400, "subscription_id_invalid")
    _error(await subs.get("/pg/subscriptions/unknown"), 404, "subscription_does_not_exist")


async def test_the_gate_guards_subscriptions(subs: httpx.AsyncClient) -> None:
    wrong = await subs.get("/pg/subscriptions/x", headers={"x-client-secret": "wrong"})
    assert wrong.status_code == 401 and wrong.json()["type"] == "authentication_error"
    old = await subs.post("/pg/plans", json={}, headers={"x-api-version": "2022-01-01"})
    _error(old, 400, "version_missing")


async def test_idempotency_key_replays_and_refuses_another_body(subs: httpx.AsyncClient) -> None:
    body = subscription_body()
    key = {"x-idempotency-key": unique("key")}
    first = await subs.post("/pg/subscriptions", json=body, headers=key)
    assert first.status_code == 200
    second = await subs.post("/pg/subscriptions", json=body, headers=key)
    assert second.status_code == 200 and second.content == first.content
    assert second.headers["x-idempotency-replayed"] == "true"
    other = body | {"subscription_note": "changed"}
    _error(await subs.post("/pg/subscriptions", json=other, headers=key), 422, "request_failed")


async def test_hosted_upi_approval_activates_the_mandate(
    subs: httpx.AsyncClient, receiver: Receiver
) -> None:
    sub = await create_subscription(subs)
    page = await hosted(subs, sub["subscription_session_id"], "upi", "approve")
    assert 'id="payment-status">SUCCESS' in page
    got = await fetch_subscription(subs, sub["subscription_id"])
    assert got["subscription_status"] == "ACTIVE"
    auth = got["authorisation_details"]
    assert auth["authorization_status"] == "ACTIVE" and auth["payment_method"] == "upi"
    assert "@" in auth["authorization_reference"]  # the UMN
    hooks = await wait_events(receiver, subs.hook, sub["subscription_id"], 2)  # type: ignore[attr-defined]
    assert types(hooks) == ["SUBSCRIPTION_AUTH_STATUS", "SUBSCRIPTION_STATUS_CHANGED"]
    auth_event, status_event = hooks[0][1], hooks[1][1]
    assert auth_event["payment_type"] == "AUTH" and auth_event["payment_status"] == "SUCCESS"
    details = status_event["subscription_details"]
    assert details["subscription_status"] == "ACTIVE"
    assert "+" not in details["subscription_expiry_time"]  # no offset in webhooks (§12.8)
    assert status_event["authorization_details"]["payment_method"]["upi"]["upi_id"]
    assert status_event["payment_gateway_details"]["gateway_name"] == "CASHFREE"
    # An active mandate is not authorised again.
    again = await subs.get(
        "/pg/view/subscriptions/authorize",
        params={"subscription_session_id": sub["subscription_session_id"]},
    )
    assert 'id="not-authorizable"' in again.text


async def test_hosted_decline_fails_the_authorisation_only(
    subs: httpx.AsyncClient, receiver: Receiver
) -> None:
    sub = await create_subscription(subs)
    await hosted(subs, sub["subscription_session_id"], "card", "decline")
    got = await fetch_subscription(subs, sub["subscription_id"])
    assert got["subscription_status"] == "INITIALIZED"
    assert got["authorisation_details"]["authorization_status"] == "FAILED"
    hooks = await wait_events(receiver, subs.hook, sub["subscription_id"], 1)  # type: ignore[attr-defined]
    assert types(hooks) == ["SUBSCRIPTION_AUTH_STATUS"]
    assert hooks[0][1]["payment_status"] == "FAILED"
    assert hooks[0][1]["failure_details"]["failure_reason"] == "AUTHORIZATION_DECLINED"
    # The payer may try again while the link lives.
    await hosted(subs, sub["subscription_session_id"], "card", "approve")
    assert (await fetch_subscription(subs, sub["subscription_id"]))["subscription_status"] == (
        "ACTIVE"
    )


async def test_dropped_authorisation_expires_with_its_link(
    subs: httpx.AsyncClient, receiver: Receiver
) -> None:
    sub = await create_subscription(subs)
    await hosted(subs, sub["subscription_session_id"], "upi", "drop")
    await advance(subs, 1700)  # the link lives 30 minutes
    assert (await fetch_subscription(subs, sub["subscription_id"]))["subscription_status"] == (
        "INITIALIZED"
    )
    await advance(subs, 200)
    got = await fetch_subscription(subs, sub["subscription_id"])
    assert got["subscription_status"] == "LINK_EXPIRED"
    hooks = await wait_events(receiver, subs.hook, sub["subscription_id"], 2)  # type: ignore[attr-defined]
    assert types(hooks) == ["SUBSCRIPTION_AUTH_STATUS", "SUBSCRIPTION_STATUS_CHANGED"]
    assert hooks[0][1]["failure_details"]["failure_reason"] == "LINK_EXPIRED"
    assert hooks[1][1]["subscription_details"]["subscription_status"] == "LINK_EXPIRED"
    late = await subs.post(
        "/pg/view/subscriptions/authorize",
        data={
            "subscription_session_id": sub["subscription_session_id"],
            "payment_method": "upi",
            "outcome": "approve",
        },
    )
    assert late.status_code == 400


async def test_auth_through_pay_returns_the_hosted_link(subs: httpx.AsyncClient) -> None:
    sub = await create_subscription(subs)
    body = {
        "subscription_id": sub["subscription_id"],
        "payment_id": unique("auth"),
        "payment_type": "AUTH",
        "subscription_session_id": sub["subscription_session_id"],
        "payment_method": {"card": {"channel": "link"}},
    }
    answer = await subs.post("/pg/subscriptions/pay", json=body)
    assert answer.status_code == 200, answer.text
    started = answer.json()
    assert started["payment_type"] == "AUTH" and started["payment_status"] == "PENDING"
    assert b'"payment_amount":1.00' in answer.content
    url = urlsplit(started["data"]["url"])
    query = parse_qs(url.query)
    assert url.path == "/pg/view/subscriptions/authorize"
    assert query["subscription_session_id"] == [sub["subscription_session_id"]]
    assert query["payment_id"] == [body["payment_id"]]
    repeat = await subs.post("/pg/subscriptions/pay", json=body)  # same payment_id, same body
    assert repeat.status_code == 200 and repeat.json()["cf_payment_id"] == started["cf_payment_id"]
    _error(
        await subs.post("/pg/subscriptions/pay", json=body | {"payment_remarks": "x"}),
        409,
        "payment_id_already_exists",
    )
    wrong = body | {"payment_id": unique("auth"), "subscription_session_id": "subs_session_x"}
    _error(
        await subs.post("/pg/subscriptions/pay", json=wrong),
        400,
        "subscription_session_id_invalid",
    )
    _error(
        await subs.post("/pg/subscriptions/pay", json=body | {"payment_type": "REFUND"}),
        400,
        "invalid_payment_type",
    )
    # The payer follows the link: that authorisation (this payment_id) succeeds.
    form = {
        "subscription_session_id": sub["subscription_session_id"],
        "payment_id": body["payment_id"],
        "payment_method": "card",
        "outcome": "approve",
    }
    assert (await subs.post(url.path, data=form)).status_code == 200
    payment = await fetch_payment(subs, sub["subscription_id"], body["payment_id"])
    assert payment["payment_status"] == "SUCCESS"
    got = await fetch_subscription(subs, sub["subscription_id"])
    assert got["authorisation_details"]["payment_id"] == body["payment_id"]
    assert got["authorisation_details"]["authorization_reference"].startswith("SI")


async def test_simulate_subs_payments_decides_an_authorisation(subs: httpx.AsyncClient) -> None:
    sub = await create_subscription(subs)
    payment_id = unique("auth")
    body = {
        "subscription_id": sub["subscription_id"],
        "payment_id": payment_id,
        "payment_type": "AUTH",
        "subscription_session_id": sub["subscription_session_id"],
    }
    assert (await subs.post("/pg/subscriptions/pay", json=body)).status_code == 200
    sim = await subs.post(
        "/pg/simulate",
        json={
            "entity": "SUBS_PAYMENTS",
            "entity_id": payment_id,
            "entity_simulation": {"payment_status": "SUCCESS"},
        },
    )
    assert sim.status_code == 200, sim.text
    assert sim.json()["entity"] == "SUBS_PAYMENTS"
    assert (await fetch_subscription(subs, sub["subscription_id"]))["subscription_status"] == (
        "ACTIVE"
    )
    unknown = await subs.post(
        "/pg/simulate",
        json={
            "entity": "SUBS_PAYMENTS",
            "entity_id": "nope",
            "entity_simulation": {"payment_status": "FAILED"},
        },
    )
    assert unknown.status_code == 404


async def test_merchant_manage_subscription(subs: httpx.AsyncClient, receiver: Receiver) -> None:
    sub = await active_subscription(subs)
    sub_id = sub["subscription_id"]
    path = f"/pg/subscriptions/{sub_id}/manage"
    _error(
        await subs.post(path, json={"subscription_id": sub_id, "action": "PAUSE"}),
        400,
        "action_not_allowed",  # ON_DEMAND plans cannot be paused
    )
    _error(
        await subs.post(path, json={"subscription_id": sub_id, "action": "STOP"}),
        400,
        "action_invalid",
    )
    cancelled = await subs.post(path, json={"subscription_id": sub_id, "action": "CANCEL"})
    assert cancelled.status_code == 200 and cancelled.json()["subscription_status"] == "CANCELLED"
    _error(
        await subs.post(path, json={"subscription_id": sub_id, "action": "CANCEL"}),
        400,
        "action_not_allowed",
    )
    hooks = await wait_events(receiver, subs.hook, sub_id, 3)  # type: ignore[attr-defined]
    assert hooks[-1][1]["subscription_details"]["subscription_status"] == "CANCELLED"


async def test_periodic_pause_is_quiet_and_activate_resumes(
    subs: httpx.AsyncClient, receiver: Receiver
) -> None:
    plan = await create_plan(
        subs,
        plan_type="PERIODIC",
        max_amount=500,
        plan_recurring_amount=100,
        plan_interval_type="MONTH",
        plan_intervals=1,
    )
    sub = await active_subscription(subs, plan_id=plan["plan_id"])
    sub_id = sub["subscription_id"]
    path = f"/pg/subscriptions/{sub_id}/manage"
    paused = await subs.post(path, json={"subscription_id": sub_id, "action": "PAUSE"})
    assert paused.json()["subscription_status"] == "PAUSED"
    back = await subs.post(path, json={"subscription_id": sub_id, "action": "ACTIVATE"})
    assert back.json()["subscription_status"] == "ACTIVE"
    hooks = await wait_events(receiver, subs.hook, sub_id, 3)  # type: ignore[attr-defined]
    statuses = [
        d["subscription_details"]["subscription_status"]
        for t, d in hooks
        if t == "SUBSCRIPTION_STATUS_CHANGED"
    ]
    assert statuses == ["ACTIVE", "ACTIVE"]  # no webhook for a merchant's PAUSE (§12.8)


async def test_webhooks_are_retried_until_delivered(
    subs: httpx.AsyncClient, receiver: Receiver
) -> None:
    name = unique("subs_retry")
    url = receiver.hook(name, answers=[500, 503])
    answer = await subs.patch("/_sandbox/subscriptions/settings", json={"webhook_url": url})
    assert answer.status_code == 200
    sub = await create_subscription(subs)
    await hosted(subs, sub["subscription_session_id"], "upi", "decline")
    hooks = await receiver.wait_for(name, 3)
    assert [h.headers["x-webhook-attempt"] for h in hooks] == ["1", "2", "3"]
    assert len({h.body for h in hooks}) == 1  # the same bytes each time
    assert len({h.headers["x-idempotency-key"] for h in hooks}) == 1
    # The sandbox logs an attempt once its answer is back, just after the receiver saw it.
    deadline = time.monotonic() + 5
    while True:
        log = await subs.get(
            "/_sandbox/subscriptions/webhooks", params={"subscription_id": sub["subscription_id"]}
        )
        outcomes = [row["outcome"] for row in log.json()]
        if len(outcomes) >= 3 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.02)
    assert outcomes == ["failed", "failed", "delivered"]
