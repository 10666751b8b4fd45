"""Buying credits end to end: our API, the Cashfree sandbox over HTTP, its signed webhooks,
RabbitMQ, the worker and PostgreSQL, all real."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.harness.stack import Stack


def _auth(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


async def _wallet(stack: Stack, tok: str) -> dict[str, Any]:
    r = await stack.api.get("/v1/wallets/me", headers=_auth(tok))
    assert r.status_code == 200
    return dict(r.json())


async def _statement(stack: Stack, tok: str, wallet_id: str) -> list[dict[str, Any]]:
    r = await stack.api.get(f"/v1/wallets/{wallet_id}/transactions", headers=_auth(tok))
    assert r.status_code == 200
    return list(r.json()["data"])


async def test_packs_are_listed(stack: Stack) -> None:
    r = await stack.api.get("/v1/packs", headers=_auth(stack.token()))
    assert r.status_code == 200
    packs = {p["code"]: (p["price_paise"], p["credits"]) for p in r.json()["packs"]}
    assert packs == {
        "pack_150": (15000, 1500),
        "pack_300": (30000, 3200),
        "pack_500": (50000, 5500),
        "pack_1000": (100000, 12000),
    }


async def test_upi_success_grants_the_pack_once(stack: Stack) -> None:
    tok = stack.token()
    order = await stack.buy(tok)
    assert order["status"] == "ACTIVE" and order["amount_paise"] == 30000
    assert (order["taxable_paise"], order["gst_amount_paise"]) == (25424, 4576)
    assert order["cgst_paise"] + order["sgst_paise"] == 4576 and order["igst_paise"] == 0
    page = await stack.pay(order, "upi", "success")
    assert "payment-status" in page
    done = await stack.wait_status(tok, order["id"], {"CREDITED"})
    assert done["credits_granted"] == 3200 and done["payment_method"] == "upi"
    wallet = await _wallet(stack, tok)
    assert wallet["available_credits"] == 3200
    assert wallet["lifetime_purchased_credits"] == 3000
    lines = await _statement(stack, tok, wallet["id"])
    assert sorted((ln["transaction_type"], ln["credits"]) for ln in lines) == [
        ("bonus", 200),
        ("purchase", 3000),
    ]
    legs = await stack.scalar(
        """SELECT string_agg(e.amount::text, ',' ORDER BY e.amount)
             FROM ledger_entries e JOIN ledger_journals j ON j.id = e.journal_id
            WHERE j.idempotency_key = :k""",
        k=f"payment:{order['id']}:inr",
    )
    assert legs == "-25424,-4576,30000"
    attempts = await stack.scalar(
        "SELECT count(*) FROM payment_attempts WHERE payment_id = :p AND status = 'SUCCESS'",
        p=order["id"],
    )
    assert attempts == 1
    assert await stack.scalar(
        "SELECT bool_and(status = 'processed') FROM payment_webhooks WHERE order_id = :o",
        o=order["order_id"],
    )


async def test_card_success_for_a_custom_top_up(stack: Stack) -> None:
    tok = stack.token()
    order = await stack.buy(tok, amount_paise=25_000)
    assert (order["base_credits"], order["bonus_credits"]) == (2500, 0)
    await stack.pay(order, "card", "success")
    done = await stack.wait_status(tok, order["id"], {"CREDITED"})
    assert done["payment_method"] == "card" and done["credits_granted"] == 2500
    assert (await _wallet(stack, tok))["available_credits"] == 2500


async def test_failure_then_retry_on_the_same_order_succeeds(stack: Stack) -> None:
    tok = stack.token()
    order = await stack.buy(tok, pack_code="pack_150")
    await stack.pay(order, "upi", "failure")
    failed = await stack.wait_status(tok, order["id"], {"FAILED"})
    assert failed["failure_code"] and failed["credits_granted"] == 0
    assert (await _wallet(stack, tok))["available_credits"] == 0
    r = await stack.api.post(
        f"/v1/payments/{order['id']}/retry",
        headers={**_auth(tok), "Idempotency-Key": "retry-1"},
    )
    assert r.status_code == 200, r.text
    again = r.json()
    assert again["id"] == order["id"] and again["status"] == "ACTIVE"
    assert again["retry_count"] == 1
    await stack.pay(again, "netbanking", "success")
    done = await stack.wait_status(tok, order["id"], {"CREDITED"})
    assert done["credits_granted"] == 1500
    attempts = await stack.scalar(
        "SELECT string_agg(status, ',' ORDER BY status) FROM payment_attempts "
        "WHERE payment_id = :p",
        p=order["id"],
    )
    assert attempts == "FAILED,SUCCESS"
    assert (await _wallet(stack, tok))["available_credits"] == 1500


async def test_user_dropped_grants_nothing(stack: Stack) -> None:
    tok = stack.token()
    order = await stack.buy(tok)
    await stack.pay(order, "upi", "user_dropped")
    dropped = await stack.wait_status(tok, order["id"], {"USER_DROPPED"})
    assert dropped["credits_granted"] == 0
    assert (await _wallet(stack, tok))["available_credits"] == 0


@pytest.mark.slow
async def test_an_expired_order_is_closed_and_a_retry_opens_a_linked_one(
    variant: Any,
) -> None:
    from commdesk_billing.modules.payments.jobs import sync_open_payments

    # Orders from this API expire in 4 s; the shared workers process its events.
    quick = await variant(payment_order_ttl_s=4)
    tok = quick.token()
    order = await quick.buy(tok)
    await asyncio.sleep(5)  # past the order's expiry, in real time on both sides
    assert await sync_open_payments(quick.engine, quick.settings) >= 1
    expired = await quick.wait_status(tok, order["id"], {"EXPIRED"})
    assert expired["credits_granted"] == 0
    page = await quick.sandbox.get(order["checkout_url"])
    assert "not-payable" in page.text
    r = await quick.api.post(
        f"/v1/payments/{order['id']}/retry",
        headers={**_auth(tok), "Idempotency-Key": "after-expiry"},
    )
    assert r.status_code == 201, r.text
    fresh = r.json()
    assert fresh["id"] != order["id"] and fresh["retry_of"] == order["id"]
    assert fresh["order_id"] != order["order_id"] and fresh["status"] == "ACTIVE"


@pytest.mark.parametrize(
    ("method", "group"),
    [("upi", "upi"), ("card", "credit_card"), ("netbanking", "net_banking"), ("app", "wallet")],
)
async def test_every_payment_method_the_seed_names_buys_credits(
    stack: Stack, method: str, group: str
) -> None:
    """UPI, cards, netbanking and app wallets (PhonePe, Paytm, Amazon Pay…): each recorded
    with Cashfree's method and group, and shown on the payment."""
    tok = stack.token()
    order = await stack.buy(tok, pack_code="pack_150")
    await stack.pay(order, method, "success")
    credited = await stack.wait_status(tok, order["id"], {"CREDITED"})
    assert (credited["payment_method"], credited["payment_group"]) == (method, group)
