"""No announcement storms (issue 12), for refunds: the refund sync sends a refund at most
once while its `refund.sync` is pending, and sends nothing while Cashfree rate-limits us."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text

from commdesk_billing.db.engine import in_transaction
from commdesk_billing.gateway import backoff
from commdesk_billing.modules.payments.crediting import credit_payment
from commdesk_billing.modules.refunds.jobs import sync_open_refunds
from commdesk_billing.security.jwt import Role
from tests.harness.faults import Recorder
from tests.harness.stack import Stack


async def _credited_without_a_worker(stack: Stack) -> dict[str, Any]:
    """A credited purchase on a stack with no worker: finance's forced sync asks Cashfree
    (PAID), and the test grants the credits as the `wallet.credit` consumer would."""
    tok = stack.token()
    order = await stack.buy(tok)
    await stack.pay(order)
    finance = {"Authorization": f"Bearer {stack.token('finance-1', Role.finance_admin)}"}
    deadline = time.monotonic() + 10
    while True:  # the sandbox settles the payment a moment after the checkout
        r = await stack.api.post(f"/v1/payments/{order['id']}/sync", headers=finance)
        assert r.status_code == 200, r.text
        if r.json()["status"] == "PAID":
            break
        assert time.monotonic() < deadline, f"never PAID: {r.json()}"
        await asyncio.sleep(0.1)
    await in_transaction(stack.engine, lambda conn: credit_payment(conn, uuid.UUID(order["id"])))
    paid = await stack.payment(tok, order["id"])
    assert paid["status"] == "CREDITED"
    return paid


async def _rows(stack: Stack, refund_id: str) -> dict[str, int]:
    """Outbox rows about this refund, by type."""
    async with stack.engine.connect() as conn:
        rows = (
            await conn.execute(
                text("""
                SELECT message_type, count(*) AS n FROM outbox
                 WHERE queue = 'refund.processing'
                   AND body::jsonb -> 'payload' ->> 'refund_id' = :r
                 GROUP BY message_type"""),
                {"r": refund_id},
            )
        ).all()
    return {r.message_type: int(r.n) for r in rows}


def _later() -> datetime:
    """Each run as if BILLING_REFUND_SYNC_AFTER_S (1 s here) had passed since the last."""
    return datetime.now(UTC) + timedelta(seconds=5)


async def test_with_nothing_sent_five_syncs_add_one_row_per_open_refund(
    quiet_stack: Stack, faults: Recorder
) -> None:
    stack = quiet_stack
    paid = await _credited_without_a_worker(stack)
    # Refunds left open by earlier tests are sent now (and stay pending: nothing relays).
    await sync_open_refunds(stack.engine, stack.settings, now=_later())
    r = await stack.refund(paid["id"], amount_paise=10_000)
    assert r.status_code == 202, r.text
    refund_id = r.json()["id"]
    runs = [await sync_open_refunds(stack.engine, stack.settings, now=_later()) for _ in range(5)]
    rows = await _rows(stack, refund_id)
    faults.record(
        "the refund sync run again and again with nothing consumed",
        injected=5,
        what="5 sync runs over one open refund, no relay",
        lost=None,
        twice=sum(max(0, n - 1) for n in rows.values()),
        outcome="one announcement, not five",
    )
    assert runs == [1, 0, 0, 0, 0]
    synced = "SELECT sync_count FROM refunds WHERE id = :r"
    assert await stack.scalar(synced, r=refund_id) == 5  # claimed by every run
    assert await _rows(stack, refund_id) == {"refund.requested": 1, "refund.sync": 1}
    assert (await stack.get_refund(refund_id))["status"] == "CREATED"

    # While a back-off is recorded (a client saw Cashfree's 429), the job claims nothing.
    async def limited(conn: Any) -> None:
        await backoff.note(conn, "create_refund", 30)

    await in_transaction(stack.engine, limited)
    try:
        assert await sync_open_refunds(stack.engine, stack.settings, now=_later()) == 0
        assert await stack.scalar(synced, r=refund_id) == 5
    finally:
        await in_transaction(stack.engine, backoff.clear)
    # Over: claimed again, still not sent twice.
    assert await sync_open_refunds(stack.engine, stack.settings, now=_later()) == 0
    assert await stack.scalar(synced, r=refund_id) == 6
    assert await _rows(stack, refund_id) == {"refund.requested": 1, "refund.sync": 1}
