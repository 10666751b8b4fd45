"""Refunds: limits, refund_id idempotency, the sandbox's refund_note trick, webhooks."""

from __future__ import annotations

import asyncio
import time

import httpx

from tests.gateway.sandbox.conftest import unique
from tests.gateway.sandbox.helpers import create_order
from tests.gateway.sandbox.servers import Receiver
from tests.gateway.sandbox.strict_models import ErrorBody, OrderEntity, RefundEntity, parse
from tests.gateway.sandbox.webhook_checks import refund_hook


async def paid_order(api: httpx.AsyncClient, notify_url: str | None = None) -> OrderEntity:
    order = await create_order(api, amount=300, notify_url=notify_url)
    response = await api.post(
        "/pg/view/checkout",
        data={
            "payment_session_id": order.payment_session_id,
            "payment_method": "upi",
            "outcome": "success",
        },
    )
    assert response.status_code == 200
    return order


async def refund(api: httpx.AsyncClient, order_id: str, **body: object) -> httpx.Response:
    return await api.post(f"/pg/orders/{order_id}/refunds", json=body)


async def wait_refund(
    api: httpx.AsyncClient, order_id: str, refund_id: str, status: str
) -> RefundEntity:
    deadline = time.monotonic() + 5
    while True:
        response = await api.get(f"/pg/orders/{order_id}/refunds/{refund_id}")
        entity = parse(RefundEntity, response.content)
        if entity.refund_status == status:
            return entity
        assert time.monotonic() < deadline, entity.refund_status
        await asyncio.sleep(0.05)


async def test_refund_goes_pending_then_success_with_a_webhook(
    api: httpx.AsyncClient, receiver: Receiver
) -> None:
    name = unique("refund")
    order = await paid_order(api, receiver.hook(name))
    response = await refund(
        api, order.order_id, refund_id="r_1", refund_amount=100.5, refund_note="Customer asked"
    )
    assert response.status_code == 200, response.text
    created = parse(RefundEntity, response.content)
    assert created.refund_status == "PENDING"
    assert b'"refund_amount":100.50' in response.content
    done = await wait_refund(api, order.order_id, "r_1", "SUCCESS")
    assert done.processed_at is not None and done.refund_arn
    hooks = await receiver.wait_for(name, 2)  # the payment's and the refund's
    refund_hooks = [h for h in hooks if b"REFUND_STATUS_WEBHOOK" in h.body]
    event = refund_hook(refund_hooks[0])
    assert event.data.refund.refund_status == "SUCCESS"
    assert event.data.refund.cf_refund_id == created.cf_refund_id
    assert str(event.data.refund.refund_amount) == "100.50"


async def test_refunds_cannot_exceed_what_is_left(api: httpx.AsyncClient) -> None:
    order = await paid_order(api)
    assert (
        await refund(api, order.order_id, refund_id="r_a", refund_amount=200)
    ).status_code == 200
    over = await refund(api, order.order_id, refund_id="r_b", refund_amount=100.01)
    assert over.status_code == 400
    assert parse(ErrorBody, over.content).code == "refund_amount_invalid"
    rest = await refund(api, order.order_id, refund_id="r_c", refund_amount=100)
    assert rest.status_code == 200
    listing = await api.get(f"/pg/orders/{order.order_id}/refunds")
    refunds = parse(list[RefundEntity], listing.content)
    assert [r.refund_id for r in refunds] == ["r_a", "r_c"]


async def test_over_refund_of_the_whole_order(api: httpx.AsyncClient) -> None:
    order = await paid_order(api)
    over = await refund(api, order.order_id, refund_amount=300.01)
    assert over.status_code == 400
    assert parse(ErrorBody, over.content).code == "refund_amount_invalid"


async def test_same_refund_id_same_body_is_the_same_refund(api: httpx.AsyncClient) -> None:
    order = await paid_order(api)
    first = await refund(api, order.order_id, refund_id="r_same", refund_amount=50)
    again = await refund(api, order.order_id, refund_id="r_same", refund_amount=50.00)
    assert again.status_code == 200
    assert (
        parse(RefundEntity, again.content).cf_refund_id
        == parse(RefundEntity, first.content).cf_refund_id
    )
    clash = await refund(api, order.order_id, refund_id="r_same", refund_amount=60)
    assert clash.status_code == 400
    assert parse(ErrorBody, clash.content).code == "refund_id_already_exists"
    listing = parse(
        list[RefundEntity], (await api.get(f"/pg/orders/{order.order_id}/refunds")).content
    )
    assert len(listing) == 1


async def test_refund_note_forces_the_outcome(api: httpx.AsyncClient) -> None:
    order = await paid_order(api)
    for note in ("FAILED", "PENDING", "ACTIVE", "SUCCESS"):
        response = await refund(
            api, order.order_id, refund_id=f"r_{note}", refund_amount=10, refund_note=note
        )
        assert response.status_code == 200
    # FAILED ends CANCELLED (the failure status Cashfree's SDK accepts); its amount is free again.
    await wait_refund(api, order.order_id, "r_FAILED", "CANCELLED")
    await wait_refund(api, order.order_id, "r_SUCCESS", "SUCCESS")
    await asyncio.sleep(0.3)
    for note in ("PENDING", "ACTIVE"):
        still = await api.get(f"/pg/orders/{order.order_id}/refunds/r_{note}")
        assert parse(RefundEntity, still.content).refund_status == "PENDING"
    # 300 paid - 3 * 10 still counted (cancelled one is not) = 270 left.
    assert (await refund(api, order.order_id, refund_amount=270.01)).status_code == 400
    assert (await refund(api, order.order_id, refund_amount=270)).status_code == 200


async def test_refund_of_an_unpaid_order_is_refused(api: httpx.AsyncClient) -> None:
    order = await create_order(api)
    response = await refund(api, order.order_id, refund_amount=1)
    assert response.status_code == 409
    assert parse(ErrorBody, response.content).code == "refund_not_allowed"


async def test_bad_refund_requests(api: httpx.AsyncClient) -> None:
    order = await paid_order(api)
    cases: list[tuple[dict[str, object], str]] = [
        ({"refund_amount": 0}, "refund_amount_invalid"),
        ({"refund_amount": 1.001}, "refund_amount_invalid"),
        ({}, "refund_amount_invalid"),
        ({"refund_amount": 1, "refund_speed": "FAST"}, "refund_speed_invalid"),
        ({"refund_amount": 1, "refund_note": "x"}, "refund_note_invalid"),
        ({"refund_amount": 1, "refund_id": "x"}, "refund_id_invalid"),
    ]
    for body, code in cases:
        response = await refund(api, order.order_id, **body)
        assert response.status_code == 400
        assert parse(ErrorBody, response.content).code == code, body
    unknown = await api.get(f"/pg/orders/{order.order_id}/refunds/nope")
    assert unknown.status_code == 404
    assert parse(ErrorBody, unknown.content).code == "refund_not_found"


async def test_refund_with_idempotency_key_replays(api: httpx.AsyncClient) -> None:
    order = await paid_order(api)
    key = {"x-idempotency-key": unique("k")}
    first = await api.post(
        f"/pg/orders/{order.order_id}/refunds", json={"refund_amount": 5}, headers=key
    )
    again = await api.post(
        f"/pg/orders/{order.order_id}/refunds", json={"refund_amount": 5}, headers=key
    )
    assert again.content == first.content
    listing = parse(
        list[RefundEntity], (await api.get(f"/pg/orders/{order.order_id}/refunds")).content
    )
    assert len(listing) == 1
