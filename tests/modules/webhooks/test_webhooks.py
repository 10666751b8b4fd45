"""Webhooks at the door: forged, altered, stale, duplicated, out of order, lying about the
amount, for orders we never made, or never delivered at all."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from commdesk_billing.modules.payments.jobs import sync_open_payments
from tests.harness.stack import Stack, webhook_body


def _auth(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


async def _credits(stack: Stack, tok: str) -> int:
    r = await stack.api.get("/v1/wallets/me", headers=_auth(tok))
    return int(r.json()["available_credits"])


async def _paid_silently(stack: Stack, tok: str) -> tuple[dict[str, Any], str]:
    """An order paid at Cashfree whose webhook Cashfree never sends."""
    await stack.faults(webhook_drop_rate=1.0)
    order = await stack.buy(tok)
    await stack.pay(order, "upi", "success")
    for _ in range(100):
        r = await stack.sandbox.get(f"/pg/orders/{order['order_id']}/payments")
        payments = r.json()
        if payments and payments[0]["payment_status"] == "SUCCESS":
            return order, str(payments[0]["cf_payment_id"])
        await asyncio.sleep(0.05)
    raise AssertionError(f"the sandbox did not settle the payment: {payments}")


def _paid(order: dict[str, Any], cf_payment_id: str, status: str = "SUCCESS") -> bytes:
    """The payment webhook Cashfree would send for a ₹300 order."""
    return webhook_body(
        order["order_id"],
        order_amount="300.00",
        payment_amount="300.00",
        cf_payment_id=cf_payment_id,
        status=status,
    )


async def _webhooks(stack: Stack, order_id: str) -> list[Any]:
    async with stack.engine.connect() as conn:
        from sqlalchemy import text

        rows = await conn.execute(
            text(
                "SELECT status, outcome, duplicates FROM payment_webhooks "
                "WHERE order_id = :o ORDER BY received_at"
            ),
            {"o": order_id},
        )
        return list(rows)


async def test_a_forged_signature_is_refused_and_nothing_is_stored(stack: Stack) -> None:
    tok = stack.token()
    order, cf_payment_id = await _paid_silently(stack, tok)
    body = _paid(order, cf_payment_id)
    r = await stack.signed_webhook(body, secret="not-the-merchant-secret")
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "webhook_signature_invalid"
    unsigned = await stack.api.post(
        "/v1/webhooks/cashfree", content=body, headers={"content-type": "application/json"}
    )
    assert unsigned.status_code == 401
    await asyncio.sleep(0.5)
    assert await _webhooks(stack, order["order_id"]) == []
    assert (await stack.payment(tok, order["id"]))["status"] == "ACTIVE"
    assert await _credits(stack, tok) == 0


async def test_a_body_altered_after_signing_is_refused(stack: Stack) -> None:
    tok = stack.token()
    order, cf_payment_id = await _paid_silently(stack, tok)
    body = _paid(order, cf_payment_id)
    ts = str(int(time.time() * 1000))
    from commdesk_billing.gateway import signature

    sig = signature.sign(stack.settings.cashfree_client_secret.get_secret_value(), ts, body)
    # Re-serialising the same JSON (300.00 -> 300.0) is an alteration too.
    altered = body.replace(b"300.00", b"300.0")
    r = await stack.api.post(
        "/v1/webhooks/cashfree",
        content=altered,
        headers={
            "content-type": "application/json",
            "x-webhook-timestamp": ts,
            "x-webhook-signature": sig,
        },
    )
    assert r.status_code == 401
    assert await _webhooks(stack, order["order_id"]) == []


async def test_stale_and_future_timestamps_are_refused(stack: Stack) -> None:
    tok = stack.token()
    order, cf_payment_id = await _paid_silently(stack, tok)
    body = _paid(order, cf_payment_id)
    old = str(int((time.time() - 2 * 86400) * 1000))
    future = str(int((time.time() + 3600) * 1000))
    for ts in (old, future):
        r = await stack.signed_webhook(body, timestamp=ts)
        assert r.status_code == 401 and r.json()["code"] == "webhook_stale"
    # Cashfree's own retry 40 minutes later is still welcome.
    late = str(int((time.time() - 40 * 60) * 1000))
    r = await stack.signed_webhook(body, timestamp=late)
    assert r.status_code == 200, r.text
    await stack.wait_status(tok, order["id"], {"CREDITED"})


async def test_the_same_webhook_ten_times_at_once_grants_once(stack: Stack) -> None:
    tok = stack.token()
    order, cf_payment_id = await _paid_silently(stack, tok)
    body = _paid(order, cf_payment_id)
    ts = str(int(time.time() * 1000))
    # The idempotency header is not signed: a replay with fresh values of it (and of the
    # unsigned attempt header, even a non-ASCII digit) is still the same delivery.
    answers = await asyncio.gather(
        *(
            stack.signed_webhook(
                body,
                timestamp=ts,
                extra={"x-idempotency-key": f"k{i}", "x-webhook-attempt": b"\xb2" if i else "1"},
            )
            for i in range(10)
        )
    )

    assert [a.status_code for a in answers] == [200] * 10
    outcomes = sorted(a.json()["status"] for a in answers)
    assert outcomes == ["accepted"] + ["duplicate"] * 9
    done = await stack.wait_status(tok, order["id"], {"CREDITED"})
    assert done["credits_granted"] == 3200
    await asyncio.sleep(0.5)
    assert await _credits(stack, tok) == 3200
    rows = await _webhooks(stack, order["order_id"])
    assert len(rows) == 1 and rows[0].duplicates == 9
    grants = await stack.scalar(
        "SELECT count(*) FROM wallet_transactions WHERE source_id = :p", p=order["id"]
    )
    assert grants == 2  # the purchase lot and the bonus lot, once each


async def test_a_failure_arriving_after_success_does_not_undo_it(stack: Stack) -> None:
    tok = stack.token()
    order, cf_payment_id = await _paid_silently(stack, tok)
    success = _paid(order, cf_payment_id)
    assert (await stack.signed_webhook(success)).status_code == 200
    await stack.wait_status(tok, order["id"], {"CREDITED"})
    failed = _paid(order, "9" + cf_payment_id, status="FAILED")
    r = await stack.signed_webhook(failed)
    assert r.status_code == 200 and r.json()["status"] == "accepted"
    for _ in range(50):
        rows = await _webhooks(stack, order["order_id"])
        if all(row.status == "processed" for row in rows):
            break
        await asyncio.sleep(0.1)
    assert [row.status for row in rows] == ["processed", "processed"]
    assert (await stack.payment(tok, order["id"]))["status"] == "CREDITED"
    assert await _credits(stack, tok) == 3200


async def test_a_webhook_whose_amount_disagrees_grants_nothing(stack: Stack) -> None:
    tok = stack.token()
    order = await stack.buy(tok)  # never paid
    body = webhook_body(
        order["order_id"], order_amount="1.00", payment_amount="1.00", cf_payment_id="4242"
    )
    r = await stack.signed_webhook(body)
    assert r.status_code == 200 and r.json()["status"] == "mismatch"
    rows = await _webhooks(stack, order["order_id"])
    assert [row.status for row in rows] == ["rejected"]
    fraud = await stack.scalar("SELECT kind FROM fraud_events WHERE payment_id = :p", p=order["id"])
    assert fraud == "webhook_amount_mismatch"
    await asyncio.sleep(0.5)
    assert (await stack.payment(tok, order["id"]))["status"] == "ACTIVE"
    assert await _credits(stack, tok) == 0


async def test_a_webhook_for_an_unknown_order_is_answered_and_recorded(stack: Stack) -> None:
    body = webhook_body(
        "cdb_nobody_ordered_this",
        order_amount="300.00",
        payment_amount="300.00",
        cf_payment_id="77",
    )
    r = await stack.signed_webhook(body)
    assert r.status_code == 200 and r.json()["status"] == "unknown_order"
    rows = await _webhooks(stack, "cdb_nobody_ordered_this")
    assert [(row.status, row.outcome) for row in rows] == [("ignored", "unknown order")]


@pytest.mark.slow
async def test_a_webhook_never_delivered_is_found_by_the_sync(stack: Stack) -> None:
    tok = stack.token()
    order, _ = await _paid_silently(stack, tok)
    await asyncio.sleep(stack.settings.payment_sync_after_s + 0.2)
    assert await sync_open_payments(stack.engine, stack.settings) >= 1
    done = await stack.wait_status(tok, order["id"], {"CREDITED"})
    assert done["credits_granted"] == 3200
    assert await _webhooks(stack, order["order_id"]) == []


async def test_sandbox_duplicates_and_reordering_still_grant_once(stack: Stack) -> None:
    await stack.faults(webhook_duplicates=5, webhook_jitter_ms=200)
    tok = stack.token()
    order = await stack.buy(tok)
    await stack.pay(order, "upi", "failure")
    await stack.wait_status(tok, order["id"], {"FAILED"})
    r = await stack.api.post(
        f"/v1/payments/{order['id']}/retry", headers={**_auth(tok), "Idempotency-Key": "r"}
    )
    assert r.status_code == 200
    await stack.pay(order, "card", "success")
    await stack.wait_status(tok, order["id"], {"CREDITED"})
    await asyncio.sleep(1.0)  # let every duplicate land
    assert await _credits(stack, tok) == 3200
    rows = await _webhooks(stack, order["order_id"])
    assert len(rows) == 2 and sum(row.duplicates for row in rows) == 8
