"""No mandate, end to end on the whole stack (the worker consumes the request and the
`payment.credited` event): a debit across the threshold, an order opened for the member
with its checkout link, the pack's credits pending, the member pays on the sandbox's page,
the credits arrive through the purchase's own crediting path and pending clears."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
from prometheus_client import REGISTRY

from commdesk_billing.security.jwt import Role
from tests.harness.stack import Stack

pytestmark = pytest.mark.slow


def _auth(tok: str, key: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}", **({"Idempotency-Key": key} if key else {})}


async def _until_decision(stack: Stack, tok: str, wallet_id: str, decision: str) -> dict[str, Any]:
    """Poll the decision log until `decision` appears (what the worker does takes a moment)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        r = await stack.api.get(f"/v1/wallets/{wallet_id}/auto-recharge/events", headers=_auth(tok))
        assert r.status_code == 200, r.text
        for d in r.json()["data"]:
            if d["decision"] == decision:
                return dict(d)
            assert d["decision"] not in {"failed", "skipped", "capped"}, d
        await asyncio.sleep(0.1)
    raise AssertionError(f"no {decision} decision")


async def test_no_mandate_checkout_then_credited(stack: Stack) -> None:
    tok = stack.token(f"ar-e2e-{uuid.uuid4().hex}")
    wallet = await stack.wallet(tok)
    wid = wallet["id"]
    finance = stack.token("finance-1", Role.finance_admin)
    r = await stack.api.post(
        f"/v1/wallets/{wid}/grants",
        json={"credits": 300, "reason": "welcome"},
        headers=_auth(finance, uuid.uuid4().hex),
    )
    assert r.status_code == 201, r.text
    r = await stack.api.put(
        f"/v1/wallets/{wid}/auto-recharge",
        json={"enabled": True, "pack_code": "pack_150", "customer_phone": "9876543210"},
        headers=_auth(tok),
    )
    assert (r.status_code, r.json()["trigger_level"]) == (200, 200), r.text
    r = await stack.api.post(
        f"/v1/wallets/{wid}/debits",
        json={"credits": 150, "reason": "calls"},
        headers=_auth(tok, uuid.uuid4().hex),
    )
    assert r.status_code == 201, r.text
    bought = ("billing_credit_purchases_total", {"pack": "pack_150", "channel": "auto_recharge"})
    succeeded = ("billing_auto_recharge_events_total", {"event": "succeeded"})
    before = [REGISTRY.get_sample_value(*m) or 0 for m in (bought, succeeded)]
    opened = await _until_decision(stack, tok, wid, "checkout_opened")
    seen = await stack.wallet(tok)
    assert (seen["available_credits"], seen["pending_credits"]) == (150, 1500)
    payment = await stack.payment(tok, opened["data"]["payment_id"])
    assert payment["checkout_url"] == opened["data"]["checkout_url"]
    assert (payment["status"], payment["pack_code"]) == ("ACTIVE", "pack_150")
    await stack.pay(payment, "upi", "success")
    done = await stack.wait_status(tok, payment["id"], {"CREDITED"})
    assert done["credits_granted"] == 1500
    await _until_decision(stack, tok, wid, "succeeded")
    seen = await stack.wallet(tok)
    assert (seen["available_credits"], seen["pending_credits"]) == (1650, 0)
    # The metrics say it was an auto-recharge (the recharge trends, auto-recharge usage).
    after = [REGISTRY.get_sample_value(*m) or 0 for m in (bought, succeeded)]
    assert after[0] >= before[0] + 1 and after[1] >= before[1] + 1, (before, after)
    lines = (await stack.api.get(f"/v1/wallets/{wid}/transactions", headers=_auth(tok))).json()[
        "data"
    ]
    assert sorted(ln["transaction_type"] for ln in lines) == [
        "debit",
        "promotional",
        "purchase",
    ]
