"""Orders: create with Cashfree's validation, fetch, terminate, expiry."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.gateway.sandbox.conftest import AUTH, unique
from tests.gateway.sandbox.helpers import create_order, fetch_order, pay, upi_collect
from tests.gateway.sandbox.strict_models import ErrorBody, OrderEntity, parse


def body(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "order_id": unique("o"),
        "order_amount": 100,
        "order_currency": "INR",
        "customer_details": {"customer_id": "customer_42", "customer_phone": "9999999999"},
    }
    return base | changes


async def test_create_and_fetch(api: httpx.AsyncClient) -> None:
    created = await create_order(
        api, amount=10.15, order_note="a note", order_tags={"invoice": "INV-1"}
    )
    assert created.order_status == "ACTIVE"
    assert str(created.order_amount) == "10.15"
    assert created.order_tags == {"invoice": "INV-1"}
    assert created.order_meta.return_url == "https://merchant.example/return?order_id={order_id}"
    fetched = await fetch_order(api, created.order_id)
    assert fetched == created


async def test_order_id_is_generated_when_left_out(api: httpx.AsyncClient) -> None:
    payload = body()
    del payload["order_id"]
    response = await api.post("/pg/orders", json=payload)
    assert response.status_code == 200
    order = parse(OrderEntity, response.content)
    assert order.order_id.startswith("order_")


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"order_amount": None}, "order_amount_missing"),
        ({"order_amount": 0.5}, "order_amount_invalid"),
        ({"order_amount": 10.123}, "order_amount_invalid"),
        ({"order_amount": "100"}, "order_amount_invalid"),
        ({"order_currency": "USD"}, "order_currency_invalid"),
        ({"order_id": "x"}, "order_id_invalid"),
        ({"order_id": "has space"}, "order_id_invalid"),
        ({"customer_details": None}, "customer_details_missing"),
        ({"customer_details": {"customer_phone": "9999999999"}}, "customer_id_missing"),
        (
            {"customer_details": {"customer_id": "c1", "customer_phone": "9999999999"}},
            "customer_id_invalid",
        ),
        (
            {"customer_details": {"customer_id": "customer_42", "customer_phone": "12345"}},
            "phone_invalid",
        ),
        ({"order_note": "x"}, "order_note_invalid"),
        ({"order_expiry_time": "2020-01-01T00:00:00+05:30"}, "order_expiry_time_invalid"),
        ({"order_expiry_time": "tomorrow"}, "order_expiry_time_invalid"),
        ({"order_meta": {"notify_url": "not a url"}}, "notify_url_invalid"),
        ({"order_tags": {"k": 1}}, "k_invalid"),
    ],
)
async def test_create_refuses_bad_requests(
    api: httpx.AsyncClient, changes: dict[str, Any], code: str
) -> None:
    payload = {k: v for k, v in body(**changes).items() if v is not None}
    response = await api.post("/pg/orders", json=payload)
    assert response.status_code == 400, response.text
    error = parse(ErrorBody, response.content)
    assert (error.code, error.type) == (code, "invalid_request_error")


async def test_body_that_is_not_json_is_400(api: httpx.AsyncClient) -> None:
    response = await api.post(
        "/pg/orders", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert parse(ErrorBody, response.content).code == "request_invalid"


async def test_duplicate_order_id_is_409(api: httpx.AsyncClient) -> None:
    order = await create_order(api)
    again = await api.post("/pg/orders", json=body(order_id=order.order_id))
    assert again.status_code == 409
    assert parse(ErrorBody, again.content).code == "order_already_exists"


async def test_unknown_order_is_404(api: httpx.AsyncClient) -> None:
    for path in ("", "/payments", "/refunds", "/refunds/r_1", "/payments/1"):
        response = await api.get(f"/pg/orders/{unique('nope')}{path}")
        assert response.status_code == 404
        error = parse(ErrorBody, response.content)
        assert (error.code, error.type) == ("order_not_found", "invalid_request_error")


async def test_terminate_an_active_order(api: httpx.AsyncClient) -> None:
    order = await create_order(api)
    response = await api.patch(f"/pg/orders/{order.order_id}", json={"order_status": "TERMINATED"})
    assert response.status_code == 200
    assert parse(OrderEntity, response.content).order_status == "TERMINATED"
    # Terminating again answers the same; paying is refused.
    again = await api.patch(f"/pg/orders/{order.order_id}", json={"order_status": "TERMINATED"})
    assert parse(OrderEntity, again.content).order_status == "TERMINATED"
    refused = await pay(api, order.payment_session_id, upi_collect("testsuccess@gocash"), 400)
    assert parse(ErrorBody, refused.content).code == "order_terminated"


async def test_terminate_needs_the_terminated_status(api: httpx.AsyncClient) -> None:
    order = await create_order(api)
    response = await api.patch(f"/pg/orders/{order.order_id}", json={"order_status": "PAID"})
    assert response.status_code == 400
    assert parse(ErrorBody, response.content).code == "order_status_invalid"


async def test_terminate_with_an_open_payment_waits_for_it(api: httpx.AsyncClient) -> None:
    order = await create_order(api)
    await pay(api, order.payment_session_id, upi_collect("testfailure@gocash"))
    response = await api.patch(f"/pg/orders/{order.order_id}", json={"order_status": "TERMINATED"})
    assert parse(OrderEntity, response.content).order_status == "TERMINATION_REQUESTED"
    for _ in range(100):
        if (await fetch_order(api, order.order_id)).order_status != "TERMINATION_REQUESTED":
            break
        await asyncio.sleep(0.05)
    assert (await fetch_order(api, order.order_id)).order_status == "TERMINATED"


async def test_a_paid_order_cannot_be_terminated(api: httpx.AsyncClient) -> None:
    order = await create_order(api)
    await api.post(
        "/pg/view/checkout",
        data={
            "payment_session_id": order.payment_session_id,
            "payment_method": "upi",
            "outcome": "success",
        },
    )
    response = await api.patch(f"/pg/orders/{order.order_id}", json={"order_status": "TERMINATED"})
    assert response.status_code == 400
    assert parse(ErrorBody, response.content).code == "order_already_paid"
    assert (await fetch_order(api, order.order_id)).order_status == "PAID"


async def expired_count(api: httpx.AsyncClient) -> int:
    health = (await api.get("/_sandbox/health")).json()
    return int(health["orders"].get("EXPIRED", 0))


async def test_orders_expire_by_the_sweep_and_refuse_payment(api: httpx.AsyncClient) -> None:
    clock = (await api.get("/_sandbox/clock")).json()
    soon = (datetime.fromisoformat(clock["now"]) + timedelta(minutes=10)).isoformat()
    first = await create_order(api, order_expiry_time=soon)
    second = await create_order(api, order_expiry_time=soon)
    assert first.order_expiry_time == soon
    before = await expired_count(api)
    await api.post("/_sandbox/clock", json={"advance_seconds": 601})
    # Nobody reads the orders: the sweep (every 0.2 s here) must expire them by itself.
    await asyncio.sleep(0.6)
    assert await expired_count(api) == before + 2
    assert (await fetch_order(api, first.order_id)).order_status == "EXPIRED"
    refused = await pay(api, second.payment_session_id, upi_collect("testsuccess@gocash"), 400)
    assert parse(ErrorBody, refused.content).code == "order_expired"
    terminate = await api.patch(
        f"/pg/orders/{second.order_id}", json={"order_status": "TERMINATED"}
    )
    assert parse(ErrorBody, terminate.content).code == "order_already_expired"
    # Orders with the default expiry (30 days) are untouched.
    fresh = await create_order(api)
    assert (await fetch_order(api, fresh.order_id)).order_status == "ACTIVE"


async def test_orders_expire_lazily_on_read(start_sandbox: Callable[..., str]) -> None:
    # A sweep that never runs in the test's time: only the read can expire the order.
    url = start_sandbox(expiry_sweep_s=3600)
    async with httpx.AsyncClient(base_url=url, headers=AUTH) as client:
        now = datetime.fromisoformat((await client.get("/_sandbox/clock")).json()["now"])
        order = await create_order(
            client, order_expiry_time=(now + timedelta(minutes=5)).isoformat()
        )
        await client.post("/_sandbox/clock", json={"advance_seconds": 301})
        assert (await client.get("/_sandbox/health")).json()["orders"] == {"ACTIVE": 1}
        assert (await fetch_order(client, order.order_id)).order_status == "EXPIRED"
