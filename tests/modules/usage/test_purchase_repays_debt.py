"""End to end on the stack (the Cashfree sandbox, our API and a worker on real sockets): a
member's overdraft meter leaves usage owing, the member buys a pack through the hosted
checkout, and the worker's `wallet.credit` consumer repays the debt from the new credits
when `payment.credited` arrives — once, with the purchase's lots drawn like any spend."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from commdesk_billing.modules.ledger.verify import verify_ledger
from commdesk_billing.modules.usage import invariants
from commdesk_billing.security.jwt import Role, issue_token
from tests.harness.stack import Stack
from tests.modules.usage.conftest import event

pytestmark = pytest.mark.slow


async def test_a_purchase_through_the_checkout_repays_usage_debt(stack: Stack) -> None:
    finance = issue_token(stack.settings, sub="finance-e2e", role=Role.finance_admin)
    service = issue_token(
        stack.settings, sub="svc-e2e", role=Role.service, scopes=["usage:write", "usage:read"]
    )
    meter = f"m.{uuid.uuid4().hex[:12]}"
    r = await stack.api.post(
        "/v1/usage/price-book",
        json={
            "meter": meter,
            "tiers": [{"up_to": None, "millicredits_per_unit": 1000}],
            "on_insufficient": "overdraft",
            "overdraft_limit_credits": 500,
            "reason": "e2e",
            "effective_from": (datetime.now(UTC) - timedelta(days=1)).isoformat(),
        },
        headers={"Authorization": f"Bearer {finance}", "Idempotency-Key": uuid.uuid4().hex},
    )
    assert r.status_code == 201, r.text
    buyer = stack.token()
    wallet = (await stack.wallet(buyer))["id"]
    r = await stack.api.post(
        "/v1/usage/events",
        json={"events": [event("e2e-1", meter, 400, wallet, datetime.now(UTC))]},
        headers={"Authorization": f"Bearer {service}"},
    )
    assert r.status_code == 200, r.text
    assert (r.json()["results"][0]["debited_credits"], r.json()["results"][0]["debt_credits"]) == (
        0,
        400,
    )

    async def summary() -> dict[str, Any]:
        s = await stack.api.get(
            "/v1/usage/summary",
            params={"wallet_id": wallet},
            headers={"Authorization": f"Bearer {service}"},
        )
        assert s.status_code == 200, s.text
        return dict(s.json())

    order = await stack.buy(buyer, pack_code="pack_300")  # 3 200 credits with its bonus
    await stack.pay(order)
    await stack.wait_status(buyer, order["id"], {"CREDITED"}, timeout_s=60)
    # The repayment follows the crediting through the outbox: wait for it (bounded).
    deadline = time.monotonic() + 30
    owed = (await summary())["debt_outstanding_credits"]
    while owed and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        owed = (await summary())["debt_outstanding_credits"]
    assert owed == 0
    balance = (await stack.wallet(buyer))["available_credits"]
    assert balance == 3200 - 400
    lines = await stack.scalar(
        "SELECT count(*) FROM wallet_transactions WHERE wallet_id = :w"
        " AND idempotency_key LIKE 'usage-debt:%'",
        w=uuid.UUID(wallet),
    )
    assert lines == 1
    report = await verify_ledger(stack.engine, checks=list(invariants.CHECKS))
    assert report.findings == []
