"""Refunds of credit purchases debited on a mandate (auto-recharge), end to end over real
HTTP: our API, the refund.processing worker, Cashfree Subscriptions' refund API in the sandbox
(`/subscriptions/{id}/refunds`, its `refund_note` switch and `SUBSCRIPTION_REFUND_STATUS`
webhook), PostgreSQL. The money path is a checkout purchase's: credits held before Cashfree
is asked, journals on success, credits back on failure, the sync for a lost webhook."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta

import pytest

from commdesk_billing.gateway import signature
from commdesk_billing.modules.ledger.verify import verify_ledger
from commdesk_billing.modules.refunds.jobs import sync_open_refunds
from tests.harness.stack import Stack, StackFactory
from tests.modules.autorecharge.mandate_helpers import SUBS_HOOK, mandate_stack
from tests.modules.refunds.mandate_helpers import (
    credited_on_mandate,
    inr_legs,
    lots,
    sandbox_refund,
    until,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
async def mstack(stack_factory: StackFactory) -> AsyncIterator[Stack]:
    """One stack for the module, torn down at its end (its clock moves by days)."""
    async with AsyncExitStack() as scope:
        yield await mandate_stack(stack_factory, scope=scope)


async def _subscription_of(stack: Stack, payment_id: str) -> str:
    return str(
        await stack.scalar(
            "SELECT subscription_id FROM payments WHERE id = :p", p=uuid.UUID(payment_id)
        )
    )


async def _verified(stack: Stack) -> None:
    report = await verify_ledger(stack.engine)
    assert report.ok, [str(f) for f in report.findings]


async def test_a_mandate_debit_is_refunded_through_subscriptions(mstack: Stack) -> None:
    tok, paid = await credited_on_mandate(mstack)
    pid = paid["id"]
    r = await mstack.refund(pid)
    assert r.status_code == 202, r.text
    created = r.json()
    assert (created["status"], created["amount_paise"]) == ("CREATED", 30_000)
    assert (created["base_credits"], created["bonus_credits"]) == (3000, 200)
    # Held before Cashfree is asked: nothing left to spend while it works.
    wallet = await mstack.wallet(tok)
    assert (wallet["available_credits"], wallet["locked_credits"]) == (0, 3200)

    done = await mstack.wait_refund(created["id"], {"SUCCESS"})
    assert done["cf_refund_id"]
    # Made at Cashfree Subscriptions under our refund id, of the charge; not a PG refund.
    sub_id = await _subscription_of(mstack, pid)
    at_cf = await sandbox_refund(mstack, sub_id, created["refund_ref"])
    assert (at_cf["refund_status"], at_cf["refund_amount"], at_cf["payment_id"]) == (
        "SUCCESS",
        300.0,
        paid["order_id"],
    )
    assert at_cf["cf_refund_id"] == done["cf_refund_id"]
    pg = await mstack.sandbox.get(f"/pg/orders/{paid['order_id']}/refunds")
    assert pg.status_code == 404
    # Settled by Cashfree's refund webhook (no sync was run): its row says so.
    hooks = await mstack.scalar(
        "SELECT count(*) FROM subscription_webhooks "
        "WHERE event_type = 'SUBSCRIPTION_REFUND_STATUS' AND subscription_id = :s",
        s=sub_id,
    )
    assert hooks == 1

    wallet = await mstack.wallet(tok)
    assert (wallet["available_credits"], wallet["locked_credits"]) == (0, 0)
    assert await lots(mstack, pid) == {"purchase": (0, 3000, 0), "bonus": (0, 200, 0)}
    assert await inr_legs(mstack, created["id"]) == {
        "inr:deferred_revenue": 25424,
        "inr:gst_payable": 4576,
        "inr:refunds_payable": 0,  # owed, then paid out: nets to zero
        "inr:gateway_clearing": -30000,
    }
    assert await mstack.scalar(
        "SELECT refunded AND refund_amount_paise = 30000 FROM payments WHERE id = :p",
        p=uuid.UUID(pid),
    )

    async def credit_notes() -> object:
        return await mstack.scalar(
            "SELECT count(*) FROM invoices WHERE payment_id = :p AND kind = 'credit_note'",
            p=uuid.UUID(pid),
        )

    await until(credit_notes, 1)
    again = await mstack.refund(pid, amount_paise=100)
    assert again.status_code == 422 and again.json()["refundable_paise"] == 0
    await _verified(mstack)


async def test_a_failed_refund_gives_the_credits_back_and_partials_add_up(
    mstack: Stack,
) -> None:
    tok, paid = await credited_on_mandate(mstack)
    pid = paid["id"]
    # The sandbox's refund_note switch: FAILED ends it FAILED at Cashfree, CANCELLED here.
    failed = await mstack.refund(pid, amount_paise=15_000, reason="FAILED")
    assert failed.status_code == 202, failed.text
    await mstack.wait_refund(failed.json()["id"], {"CANCELLED"})
    wallet = await mstack.wallet(tok)
    assert (wallet["available_credits"], wallet["locked_credits"]) == (3200, 0)
    assert await lots(mstack, pid) == {"purchase": (3000, 0, 0), "bonus": (200, 0, 0)}
    assert await inr_legs(mstack, failed.json()["id"]) == {}

    # Two partial refunds: they add up to the purchase exactly, never a paisa over.
    first = await mstack.refund(pid, amount_paise=10_005)
    second = await mstack.refund(pid, amount_paise=19_995)
    assert first.status_code == second.status_code == 202, (first.text, second.text)
    over = await mstack.refund(pid, amount_paise=100)
    assert over.status_code == 422 and over.json().get("refundable_paise") == 0, over.text
    a = await mstack.wait_refund(first.json()["id"], {"SUCCESS"})
    b = await mstack.wait_refund(second.json()["id"], {"SUCCESS"})
    for field, whole in (
        ("amount_paise", 30000),
        ("taxable_paise", 25424),
        ("base_credits", 3000),
        ("bonus_credits", 200),
    ):
        assert a[field] + b[field] == whole, field
    assert a["cgst_paise"] + b["cgst_paise"] + a["sgst_paise"] + b["sgst_paise"] == 4576
    sub_id = await _subscription_of(mstack, pid)
    at_cf = [
        await sandbox_refund(mstack, sub_id, x["refund_ref"])
        for x in (failed.json(), first.json(), second.json())
    ]
    assert [(x["refund_status"], x["refund_amount"]) for x in at_cf] == [
        ("FAILED", 150.0),
        ("SUCCESS", 100.05),
        ("SUCCESS", 199.95),
    ]
    assert (await mstack.wallet(tok))["available_credits"] == 0
    # Each refund's status webhook is its own event (not a repeat of the first one).
    hooks = await mstack.scalar(
        "SELECT count(*) FROM subscription_webhooks "
        "WHERE event_type = 'SUBSCRIPTION_REFUND_STATUS' AND subscription_id = :s AND repeats = 0",
        s=sub_id,
    )
    assert hooks == 3
    await _verified(mstack)


async def test_a_lost_refund_webhook_is_settled_by_the_sync(mstack: Stack) -> None:
    tok, paid = await credited_on_mandate(mstack)
    # Cashfree's Subscriptions webhooks go nowhere from now on.
    off = await mstack.sandbox.patch("/_sandbox/subscriptions/settings", json={"webhook_url": None})
    assert off.status_code == 200, off.text
    try:
        r = await mstack.refund(paid["id"], amount_paise=12_000)
        assert r.status_code == 202, r.text
        await mstack.wait_refund(r.json()["id"], {"PENDING"})
        sub_id = await _subscription_of(mstack, paid["id"])

        async def at_cashfree() -> object:
            return (await sandbox_refund(mstack, sub_id, r.json()["refund_ref"]))["refund_status"]

        await until(at_cashfree, "SUCCESS")  # done at Cashfree, and nobody was told
        await asyncio.sleep(0.5)
        still = await mstack.get_refund(r.json()["id"])
        assert still["status"] == "PENDING", f"without its webhook the refund went on: {still}"
        later = datetime.now(UTC) + timedelta(seconds=5)
        assert await sync_open_refunds(mstack.engine, mstack.settings, now=later) >= 1
        done = await mstack.wait_refund(r.json()["id"], {"SUCCESS"})
        assert done["amount_paise"] == 12_000
        wallet = await mstack.wallet(tok)
        assert (wallet["available_credits"], wallet["locked_credits"]) == (3200 - 1200 - 80, 0)
    finally:
        on = await mstack.sandbox.patch(
            "/_sandbox/subscriptions/settings", json={"webhook_url": mstack.api_url + SUBS_HOOK}
        )
        assert on.status_code == 200, on.text
    await _verified(mstack)


async def test_same_idempotency_key_twice_makes_one_refund(mstack: Stack) -> None:
    _, paid = await credited_on_mandate(mstack, "pack_150")
    pid = paid["id"]
    key = uuid.uuid4().hex
    first = await mstack.refund(pid, amount_paise=5000, key=key)
    second = await mstack.refund(pid, amount_paise=5000, key=key)
    assert first.status_code == second.status_code == 202
    assert second.headers.get("idempotent-replayed") == "true"
    assert first.content == second.content
    other = await mstack.refund(pid, amount_paise=6000, key=key)
    assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"
    count = await mstack.scalar(
        "SELECT count(*) FROM refunds WHERE payment_id = :p", p=uuid.UUID(pid)
    )
    assert count == 1
    await mstack.wait_refund(first.json()["id"], {"SUCCESS"})
    # Cashfree holds exactly one refund of the charge: 100.00 of its 150.00 is left.
    sub_id = await _subscription_of(mstack, pid)
    left = await mstack.sandbox.post(
        f"/pg/subscriptions/{sub_id}/refunds",
        json={"payment_id": paid["order_id"], "refund_id": "rf_probe_1", "refund_amount": 100.01},
    )
    assert left.status_code == 400 and left.json()["code"] == "refund_amount_invalid"


async def test_a_refund_webhook_is_not_believed(mstack: Stack) -> None:
    """A signed SUBSCRIPTION_REFUND_STATUS saying SUCCESS for a refund Cashfree's API still
    has PENDING: stored, the refund looked up, and nothing moves."""
    tok, paid = await credited_on_mandate(mstack, "pack_150")
    r = await mstack.refund(paid["id"], amount_paise=5000, reason="PENDING")
    assert r.status_code == 202, r.text
    refund = await mstack.wait_refund(r.json()["id"], {"PENDING"})
    sub_id = await _subscription_of(mstack, paid["id"])
    asked = await mstack.scalar("SELECT sync_count FROM refunds WHERE id = :r", r=refund["id"])
    body = json.dumps(
        {
            "type": "SUBSCRIPTION_REFUND_STATUS",
            "event_time": datetime.now(UTC).isoformat(),
            "data": {
                "subscription_id": sub_id,
                "payment_id": paid["order_id"],
                "refund_id": refund["refund_ref"],
                "refund_amount": 50.0,
                "refund_status": "SUCCESS",
            },
        }
    ).encode()
    ts = str(int(time.time() * 1000))
    secret = mstack.settings.cashfree_client_secret.get_secret_value()
    answer = await mstack.api.post(
        SUBS_HOOK,
        content=body,
        headers={
            "content-type": "application/json",
            "x-webhook-timestamp": ts,
            "x-webhook-signature": signature.sign(secret, ts, body),
            "x-webhook-version": "2025-01-01",
        },
    )
    assert answer.status_code == 200 and answer.json()["status"] == "accepted", answer.text

    async def looked_up() -> bool:
        count = await mstack.scalar("SELECT sync_count FROM refunds WHERE id = :r", r=refund["id"])
        return bool(count > asked)

    await until(looked_up, True)
    still = await mstack.get_refund(refund["id"])
    assert still["status"] == "PENDING", still
    wallet = await mstack.wallet(tok)
    assert (wallet["available_credits"], wallet["locked_credits"]) == (1500 - 500, 500)
