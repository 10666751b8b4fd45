"""Steps the Easy Split and settlement tests share: a sandbox of their own (so moving its
clock disturbs no other test), vendors, paid split orders, refunds."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from tests.gateway.sandbox.conftest import AUTH, unique
from tests.gateway.sandbox.helpers import create_order
from tests.gateway.sandbox.strict_models import OrderEntity

# KYC and settlements wait for the clock or the control API; webhooks go out at once.
SPLIT_CONFIG: dict[str, Any] = {
    "vendor_kyc_s": 3600.0,
    "vendor_settlement_s": 86_400.0,
    "vendor_settlement_step_s": 0.0,
    "merchant_settlement_s": 86_400.0,
    "split_tick_s": 0.05,
}


@pytest.fixture(scope="module")
def split_url(start_sandbox: Callable[..., str]) -> str:
    return start_sandbox(**SPLIT_CONFIG)


@pytest.fixture
async def sapi(split_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=split_url, headers=AUTH, timeout=10) as client:
        yield client
        defaults = {
            "fail_vendor_settlements": 0,
            "reverse_vendor_settlements": 0,
            "webhook_url": None,
            "initiated_event": "VENDOR_SETTLEMENT_CREATED",
        }
        assert (await client.patch("/_sandbox/easy-split", json=defaults)).status_code == 200
        faults = {"webhook_duplicates": 1, "webhook_drop_rate": 0}
        assert (await client.patch("/_sandbox/faults", json=faults)).status_code == 200


def vendor_body(vendor_id: str | None = None, **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "vendor_id": vendor_id or unique("vendor"),
        "status": "ACTIVE",
        "name": "Chess Club Pune & Co.",
        "email": "club@example.com",
        "phone": "9876543210",
        "verify_account": True,
        "dashboard_access": False,
        "schedule_option": 1,
        "bank": {
            "account_number": "026291800001191",
            "account_holder": "Chess Club Pune",
            "ifsc": "YESB0000262",
        },
        "kyc_details": {
            "account_type": "BUSINESS",
            "business_type": "Education",
            "pan": "ABCPV1234D",
        },
    }
    body.update(over)
    return {k: v for k, v in body.items() if v is not None}


async def active_vendor(api: httpx.AsyncClient, **over: Any) -> str:
    body = vendor_body(**over)
    response = await api.post("/pg/easy-split/vendors", json=body)
    assert response.status_code == 200, response.text
    forced = await api.post(
        f"/_sandbox/easy-split/vendors/{body['vendor_id']}", json={"action": "activate"}
    )
    assert forced.status_code == 200, forced.text
    return str(body["vendor_id"])


async def split_order(
    api: httpx.AsyncClient, amount: Any, splits: list[dict[str, Any]], **extra: Any
) -> OrderEntity:
    return await create_order(api, amount=amount, order_splits=splits, **extra)


async def pay_now(api: httpx.AsyncClient, order: OrderEntity) -> None:
    response = await api.post(
        "/pg/view/checkout",
        data={
            "payment_session_id": order.payment_session_id,
            "payment_method": "upi",
            "outcome": "success",
        },
    )
    assert response.status_code == 200, response.text


async def paid_split_order(
    api: httpx.AsyncClient, amount: Any, splits: list[dict[str, Any]], **extra: Any
) -> OrderEntity:
    order = await split_order(api, amount, splits, **extra)
    await pay_now(api, order)
    return order


async def vendor_unsettled(api: httpx.AsyncClient, vendor_id: str) -> bytes:
    """`vendor_unsettled` exactly as written on the wire (two decimals)."""
    response = await api.get(f"/pg/easy-split/vendors/{vendor_id}/balances")
    assert response.status_code == 200, response.text
    text = response.content
    start = text.index(b'"vendor_unsettled":') + len(b'"vendor_unsettled":')
    return text[start:].split(b",")[0].rstrip(b"}")


async def refund_and_wait(
    api: httpx.AsyncClient, order_id: str, amount: Any, **body: Any
) -> dict[str, Any]:
    refund_id = unique("rf")
    response = await api.post(
        f"/pg/orders/{order_id}/refunds",
        json={"refund_id": refund_id, "refund_amount": amount, **body},
    )
    assert response.status_code == 200, response.text
    deadline = time.monotonic() + 5
    while True:
        got = (await api.get(f"/pg/orders/{order_id}/refunds/{refund_id}")).json()
        if got["refund_status"] == "SUCCESS":
            return dict(got)
        assert time.monotonic() < deadline, got["refund_status"]
        await asyncio.sleep(0.05)
