"""Events out through the whole stack: a purchase paid at the Cashfree sandbox (real HTTP),
its payment moved and credited by the worker over RabbitMQ, each fact announced through the
outbox and turned into public events by the `webhooks.outbound` consumer; then the delivery
job POSTs them to a receiver that verifies them as docs/api.md says."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from sqlalchemy import text

from commdesk_billing.db.engine import in_transaction
from commdesk_billing.modules.events import repository as repo
from commdesk_billing.modules.events.jobs import deliver_due
from commdesk_billing.security.jwt import Role
from tests.conftest import auth
from tests.harness.stack import Stack
from tests.modules.events.conftest import Receiver


@pytest.fixture
async def registered(
    stack: Stack, make_receiver: Callable[[], Receiver]
) -> AsyncIterator[tuple[Receiver, str]]:
    receiver = make_receiver()
    r = await stack.api.post(
        "/v1/webhook-endpoints",
        json={
            "url": receiver.url,
            "event_types": ["payment.paid", "payment.credited", "payment.failed"],
        },
        headers=auth(stack.token(sub="fin-stack", role=Role.finance_admin), uuid.uuid4().hex),
    )
    assert r.status_code == 201, r.text
    receiver.secret = r.json()["secret"]
    endpoint_id = r.json()["id"]
    try:
        yield receiver, endpoint_id
    finally:
        await in_transaction(
            stack.engine, lambda c: repo.delete_endpoint(c, uuid.UUID(endpoint_id))
        )


async def _events(stack: Stack, payment_id: str, count: int) -> list[Any]:
    """The public events of this payment, once the worker recorded `count` of them."""
    deadline = time.monotonic() + 20
    while True:
        async with stack.engine.connect() as conn:
            rows = (
                await conn.execute(
                    text("""SELECT event_type, data FROM webhook_events
                             WHERE data ->> 'payment_id' = :p ORDER BY created_at"""),
                    {"p": payment_id},
                )
            ).all()
        if len(rows) >= count or time.monotonic() > deadline:
            return [(r.event_type, r.data) for r in rows]
        await asyncio.sleep(0.1)


async def test_a_purchase_is_told_paid_then_credited_and_a_failure_failed(
    stack: Stack, registered: tuple[Receiver, str]
) -> None:
    receiver, _ = registered
    sub = f"buyer-{uuid.uuid4().hex[:8]}"
    tok = stack.token(sub=sub)
    order = await stack.buy(tok)
    await stack.pay(order, "upi", "success")
    await stack.wait_status(tok, order["id"], {"CREDITED"})
    events = await _events(stack, order["id"], 2)
    assert sorted(t for t, _ in events) == ["payment.credited", "payment.paid"]
    paid = dict(events)["payment.paid"]
    assert paid == {
        "payment_id": order["id"],
        "order_id": order["order_id"],
        "user": sub,
        "amount_paise": 30000,
        "credits": 3200,
        "kind": "pack",
    }
    assert dict(events)["payment.credited"]["credits"] == 3200

    failing = await stack.buy(tok)
    await stack.pay(failing, "upi", "failure")
    await stack.wait_status(tok, failing["id"], {"FAILED"})
    (failed,) = await _events(stack, failing["id"], 1)
    assert failed[0] == "payment.failed" and failed[1]["status"] == "FAILED"

    await deliver_due(stack.engine, stack.settings)
    mine = [b for b in receiver.bodies() if b["data"]["user"] == sub]
    assert sorted(b["type"] for b in mine) == ["payment.credited", "payment.failed", "payment.paid"]
    assert all(r.verified for r in receiver.received)
