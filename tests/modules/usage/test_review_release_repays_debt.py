"""End to end on the stack: a member owes usage debt, buys a pack that fraud scoring holds
for review (so the crediting's repayment finds nothing available), and a reviewer releases
it. The release makes the credits available without any `payment.credited`; it announces
`wallet.credits_available`, and the `wallet.credit` consumer repays the debt from them —
once, under a cause naming the release, whatever is delivered again."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from commdesk_billing.db.engine import in_transaction
from commdesk_billing.modules.ledger.verify import verify_ledger
from commdesk_billing.modules.usage.consumers import repay_debts
from commdesk_billing.queues.envelope import Envelope
from commdesk_billing.security.jwt import Role, issue_token
from tests.harness.stack import Stack, StackFactory
from tests.modules.fraud.test_scoring import order, staff, tight
from tests.modules.usage.conftest import event

pytestmark = pytest.mark.slow


async def _owed(stack: Stack, wallet: str) -> int:
    return int(
        await stack.scalar(
            "SELECT coalesce(sum(incurred_credits - repaid_credits), 0) FROM usage_debts"
            " WHERE wallet_id = :w",
            w=uuid.UUID(wallet),
        )
    )


async def _consumed(stack: Stack, message_type: str) -> None:
    """Wait (bounded) until `wallet.credit` has consumed every message of this type."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        left = await stack.scalar(
            "SELECT count(*) FROM outbox o WHERE o.queue = 'wallet.credit'"
            " AND o.message_type = :t"
            " AND NOT EXISTS (SELECT 1 FROM inbox i WHERE i.message_id = o.message_id)",
            t=message_type,
        )
        if left == 0:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"wallet.credit did not consume {message_type} in time")


async def _indebted(stack: Stack, tok: str, credits: int) -> str:
    """The member's wallet, owing `credits` of an overdraft meter's usage."""
    meter = f"m.{uuid.uuid4().hex[:12]}"
    r = await stack.api.post(
        "/v1/usage/price-book",
        json={
            "meter": meter,
            "tiers": [{"up_to": None, "millicredits_per_unit": 1000}],
            "on_insufficient": "overdraft",
            "overdraft_limit_credits": 500,
            "reason": "review release test",
            "effective_from": (datetime.now(UTC) - timedelta(days=1)).isoformat(),
        },
        headers={**staff(stack), "Idempotency-Key": uuid.uuid4().hex},
    )
    assert r.status_code == 201, r.text
    wallet = str((await stack.wallet(tok))["id"])
    service = issue_token(
        stack.settings, sub="svc-usage", role=Role.service, scopes=["usage:write"]
    )
    r = await stack.api.post(
        "/v1/usage/events",
        json={"events": [event("debt-1", meter, credits, wallet, datetime.now(UTC))]},
        headers={"Authorization": f"Bearer {service}"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["results"][0]["debt_credits"] == credits
    return wallet


async def test_a_review_release_repays_usage_debt_once(stacks: StackFactory) -> None:
    stack = await stacks(**tight(fraud_new_account_weight=70))
    tok = stack.token()
    wallet = await _indebted(stack, tok, 400)
    made = await order(stack, tok, pack_code="pack_1000")  # a new account, the largest pack
    assert made.status_code == 201, made.text
    pid = made.json()["id"]
    await stack.pay(made.json())
    await stack.wait_status(tok, pid, {"CREDITED"})
    # Held for review at crediting: nothing was available to repay from (the crediting's
    # own repayment message, sent since the wallet owes, has run and found nothing).
    await _consumed(stack, "payment.credited")
    held = await stack.wallet(tok)
    assert (held["available_credits"], held["locked_credits"]) == (0, 12000)
    assert await _owed(stack, wallet) == 400
    review_id, hold_id = await stack.scalar(
        "SELECT json_build_array(id, hold_id) FROM fraud_reviews WHERE payment_id = :p", p=pid
    )
    assert hold_id is not None

    url = f"/v1/fraud/reviews/{review_id}/decision"
    r = await stack.api.post(
        url, json={"decision": "release", "reason": "known member"}, headers=staff(stack)
    )
    assert (r.status_code, r.json()["status"]) == (200, "released"), r.text
    # The repayment follows the release through the outbox: wait for it (bounded).
    deadline = time.monotonic() + 30
    owed = await _owed(stack, wallet)
    while owed and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        owed = await _owed(stack, wallet)
    assert owed == 0
    after = await stack.wallet(tok)
    assert (after["available_credits"], after["locked_credits"]) == (12000 - 400, 0)
    rows = await stack.scalar(
        "SELECT json_agg(json_build_array(credits, cause)) FROM usage_debt_repayments"
        " WHERE wallet_id = :w",
        w=uuid.UUID(wallet),
    )
    assert rows == [[400, f"fraud-review:{review_id}:release:{hold_id}"]]

    # The same decision again announces nothing more; the event delivered again (its inbox
    # row aside) repays nothing twice.
    again = await stack.api.post(
        url, json={"decision": "release", "reason": "known member"}, headers=staff(stack)
    )
    assert (again.status_code, again.json()["status"]) == (200, "released"), again.text
    bodies = await stack.scalar(
        "SELECT json_agg(body) FROM outbox WHERE message_type = 'wallet.credits_available'"
        " AND queue = 'wallet.credit'"
    )
    assert len(bodies) == 1
    envelope = Envelope.model_validate_json(bodies[0])
    assert envelope.payload == {
        "wallet_id": wallet,
        "credits": 12000,
        "cause": f"fraud-review:{review_id}:release:{hold_id}",
    }
    for _ in range(2):
        await in_transaction(stack.engine, lambda conn: repay_debts(conn, envelope))
    assert (await stack.wallet(tok))["available_credits"] == 12000 - 400
    assert (
        await stack.scalar(
            "SELECT count(*) FROM usage_debt_repayments WHERE wallet_id = :w",
            w=uuid.UUID(wallet),
        )
        == 1
    )
    report = await verify_ledger(stack.engine)
    assert report.findings == []


async def test_a_release_to_a_wallet_without_debt_sends_no_message(
    stacks: StackFactory,
) -> None:
    stack = await stacks(**tight(fraud_new_account_weight=70))
    tok = stack.token()
    made = await order(stack, tok, pack_code="pack_1000")
    pid = made.json()["id"]
    await stack.pay(made.json())
    await stack.wait_status(tok, pid, {"CREDITED"})
    review_id = await stack.scalar("SELECT id FROM fraud_reviews WHERE payment_id = :p", p=pid)
    r = await stack.api.post(
        f"/v1/fraud/reviews/{review_id}/decision",
        json={"decision": "release", "reason": "known member"},
        headers=staff(stack),
    )
    assert r.status_code == 200, r.text
    assert (await stack.wallet(tok))["available_credits"] == 12000
    written = await stack.scalar(
        "SELECT count(*) FROM outbox WHERE message_type = 'wallet.credits_available'"
    )
    assert written == 0
