"""POST /v1/payments/{id}/cancel: a buyer ends an open order. Cashfree terminates it first;
what Cashfree then says about the order decides where the payment ends (an attempt in flight
may still succeed, and then the credits are owed)."""

from __future__ import annotations

import uuid
from typing import Any

from tests.harness.stack import Stack

PROBLEM = "application/problem+json"


def _h(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


async def _cashfree_order(stack: Stack, payment: dict[str, Any]) -> dict[str, Any]:
    r = await stack.sandbox.get(f"/pg/orders/{payment['order_id']}")
    assert r.status_code == 200, r.text
    return dict(r.json())


async def _pending_attempt(stack: Stack, order: dict[str, Any]) -> str:
    """A UPI collect the payer has not answered yet: PENDING at Cashfree."""
    r = await stack.sandbox.post(
        "/pg/orders/sessions",
        json={
            "payment_session_id": order["payment_session_id"],
            "payment_method": {"upi": {"channel": "collect", "upi_id": "someone@okbank"}},
        },
        headers={"x-client-id": "", "x-client-secret": ""},
    )
    assert r.status_code == 200, r.text
    return str(r.json()["cf_payment_id"])


async def test_an_open_order_is_terminated_at_cashfree_and_cancelled(stack: Stack) -> None:
    tok = stack.token()
    order = await stack.buy(tok)
    r = await stack.api.post(f"/v1/payments/{order['id']}/cancel", headers=_h(tok))
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "CANCELLED"
    assert (await _cashfree_order(stack, order))["order_status"] == "TERMINATED"
    again = await stack.api.post(f"/v1/payments/{order['id']}/cancel", headers=_h(tok))
    assert again.status_code == 200 and again.json()["status"] == "CANCELLED"
    # Nobody can pay it now: the hosted checkout refuses the terminated order.
    paid = await stack.sandbox.post(
        "/pg/view/checkout",
        data={
            "payment_session_id": order["payment_session_id"],
            "payment_method": "upi",
            "outcome": "success",
        },
    )
    assert "terminated" in paid.text.lower()
    assert (await stack.payment(tok, order["id"]))["status"] == "CANCELLED"


async def test_a_failed_order_can_be_cancelled_and_frees_its_open_order_slot(
    stack: Stack,
) -> None:
    tok = stack.token()
    order = await stack.buy(tok)
    await stack.pay(order, "upi", "failure")
    await stack.wait_status(tok, order["id"], {"FAILED"})
    r = await stack.api.post(f"/v1/payments/{order['id']}/cancel", headers=_h(tok))
    assert r.status_code == 200 and r.json()["status"] == "CANCELLED", r.text
    # The buyer's open orders, as the open-order limit counts them: none left.
    from commdesk_billing.db.engine import in_transaction
    from commdesk_billing.modules.payments import repository as repo

    user_id = await stack.scalar(
        "SELECT user_id FROM payments WHERE id = :id", id=uuid.UUID(order["id"])
    )
    assert await in_transaction(stack.engine, lambda c: repo.count_open_orders(c, user_id)) == 0


async def test_an_attempt_in_flight_is_honoured_when_it_succeeds(stack: Stack) -> None:
    tok = stack.token()
    order = await stack.buy(tok)
    cf_payment_id = await _pending_attempt(stack, order)
    r = await stack.api.post(f"/v1/payments/{order['id']}/cancel", headers=_h(tok))
    assert r.status_code == 202, r.text
    assert r.json()["status"] in {"ACTIVE", "CREATED"}
    assert (await _cashfree_order(stack, order))["order_status"] == "TERMINATION_REQUESTED"
    simulated = await stack.sandbox.post(
        "/pg/simulate",
        json={
            "entity": "PAYMENTS",
            "entity_id": cf_payment_id,
            "entity_simulation": {"payment_status": "SUCCESS"},
        },
    )
    assert simulated.status_code == 200, simulated.text
    # The buyer's money moved: the order is paid and the credits granted, once.
    credited = await stack.wait_status(tok, order["id"], {"CREDITED"})
    assert credited["credits_granted"] > 0
    late = await stack.api.post(f"/v1/payments/{order['id']}/cancel", headers=_h(tok))
    assert late.status_code == 409 and late.headers["content-type"] == PROBLEM
    assert late.json()["code"] == "payment_not_cancellable"


async def test_an_attempt_in_flight_that_fails_ends_cancelled(stack: Stack) -> None:
    tok = stack.token()
    order = await stack.buy(tok)
    cf_payment_id = await _pending_attempt(stack, order)
    r = await stack.api.post(f"/v1/payments/{order['id']}/cancel", headers=_h(tok))
    assert r.status_code == 202, r.text
    simulated = await stack.sandbox.post(
        "/pg/simulate",
        json={
            "entity": "PAYMENTS",
            "entity_id": cf_payment_id,
            "entity_simulation": {"payment_status": "FAILED"},
        },
    )
    assert simulated.status_code == 200, simulated.text
    assert (await _cashfree_order(stack, order))["order_status"] == "TERMINATED"
    await stack.wait_status(tok, order["id"], {"CANCELLED"})


async def test_a_credited_payment_cannot_be_cancelled_and_is_left_alone(stack: Stack) -> None:
    tok, payment = await stack.credited()
    r = await stack.api.post(f"/v1/payments/{payment['id']}/cancel", headers=_h(tok))
    assert r.status_code == 409 and r.headers["content-type"] == PROBLEM, r.text
    assert r.json()["code"] == "payment_not_cancellable"
    assert r.json()["details"]["status"] == "CREDITED"
    assert (await stack.payment(tok, payment["id"]))["status"] == "CREDITED"


async def test_only_the_buyer_cancels(stack: Stack) -> None:
    tok = stack.token()
    order = await stack.buy(tok)
    other = await stack.api.post(f"/v1/payments/{order['id']}/cancel", headers=_h(stack.token()))
    assert other.status_code == 403 and other.headers["content-type"] == PROBLEM
    assert (await stack.payment(tok, order["id"]))["status"] == "ACTIVE"
    assert (await _cashfree_order(stack, order))["order_status"] == "ACTIVE"


async def test_an_order_created_after_its_cancel_is_terminated_at_cashfree(stack: Stack) -> None:
    """The buyer cancels while our create call is still on its way: the cancel finds no
    order at Cashfree (CANCELLED here); when the create lands, the order it made is
    terminated, so nobody can pay it."""
    from commdesk_billing.db.engine import in_transaction
    from commdesk_billing.gateway.factory import cashfree_client
    from commdesk_billing.modules.payments import ordering
    from commdesk_billing.modules.payments import repository as repo

    tok = stack.token()
    await stack.faults(error_rate=1.0)
    try:
        lost = await stack.api.post(
            "/v1/payments/orders",
            json={"pack_code": "pack_150", "customer_phone": "9876543210"},
            headers={**_h(tok), "Idempotency-Key": uuid.uuid4().hex},
        )
    finally:
        await stack.faults(error_rate=0.0)
    assert lost.status_code == 503, lost.text
    payment_id = await stack.scalar(
        "SELECT p.id FROM payments p JOIN users u ON u.id = p.user_id WHERE u.external_id = :sub",
        sub=_sub(tok),
    )
    cancelled = await stack.api.post(f"/v1/payments/{payment_id}/cancel", headers=_h(tok))
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "CANCELLED"
    # The create call that was on its way lands now.
    payment = await in_transaction(stack.engine, lambda c: repo.get(c, payment_id))
    assert payment is not None
    client = cashfree_client(stack.settings)
    try:
        await ordering._open_at_gateway(stack.engine, client, stack.settings, payment)
    finally:
        await client.aclose()
    order = await _cashfree_order(stack, {"order_id": payment.order_id})
    assert order["order_status"] == "TERMINATED"
    assert (await stack.payment(tok, str(payment_id)))["status"] == "CANCELLED"


def _sub(tok: str) -> str:
    import jwt

    return str(jwt.decode(tok, options={"verify_signature": False})["sub"])
