"""Small steps the sandbox tests share: make an order, pay it, wait for a status."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from tests.gateway.sandbox.conftest import unique
from tests.gateway.sandbox.strict_models import OrderEntity, PaymentEntity, PayOrderEntity, parse


async def create_order(
    api: httpx.AsyncClient, *, amount: Any = 300, notify_url: str | None = None, **extra: Any
) -> OrderEntity:
    body: dict[str, Any] = {
        "order_id": unique("order"),
        "order_amount": amount,
        "order_currency": "INR",
        "customer_details": {
            "customer_id": "customer_42",
            "customer_phone": "9999999999",
            "customer_email": "buyer@example.com",
            "customer_name": "Test Buyer",
        },
        "order_meta": {"return_url": "https://merchant.example/return?order_id={order_id}"},
    }
    if notify_url:
        body["order_meta"]["notify_url"] = notify_url
    body.update(extra)
    response = await api.post("/pg/orders", json=body)
    assert response.status_code == 200, response.text
    return parse(OrderEntity, response.content)


async def pay(
    api: httpx.AsyncClient, session_id: str, method: dict[str, Any], status: int = 200
) -> httpx.Response:
    # Order Pay carries no client credentials, only the version (cashfree.md §1.2).
    response = await api.post(
        "/pg/orders/sessions",
        json={"payment_session_id": session_id, "payment_method": method},
        headers={"x-client-id": "", "x-client-secret": ""},
    )
    assert response.status_code == status, response.text
    if status == 200:
        parse(PayOrderEntity, response.content)
    return response


def upi_collect(vpa: str) -> dict[str, Any]:
    return {"upi": {"channel": "collect", "upi_id": vpa}}


async def fetch_payment(api: httpx.AsyncClient, order_id: str, cf_payment_id: str) -> PaymentEntity:
    response = await api.get(f"/pg/orders/{order_id}/payments/{cf_payment_id}")
    assert response.status_code == 200, response.text
    return parse(PaymentEntity, response.content)


async def wait_payment(
    api: httpx.AsyncClient, order_id: str, cf_payment_id: str, within_s: float = 5.0
) -> PaymentEntity:
    """The payment once it has left PENDING / NOT_ATTEMPTED."""
    deadline = time.monotonic() + within_s
    while True:
        payment = await fetch_payment(api, order_id, cf_payment_id)
        if payment.payment_status not in ("PENDING", "NOT_ATTEMPTED"):
            return payment
        assert time.monotonic() < deadline, f"payment still {payment.payment_status}"
        await asyncio.sleep(0.05)


async def fetch_order(api: httpx.AsyncClient, order_id: str) -> OrderEntity:
    response = await api.get(f"/pg/orders/{order_id}")
    assert response.status_code == 200, response.text
    return parse(OrderEntity, response.content)
