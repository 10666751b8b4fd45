"""A refund asked through the API (real sockets: the stack's uvicorn) is audited in its own
transaction: who, from where (address, user agent, request id), and the payment and wallet
before and after."""

from __future__ import annotations

import uuid

from sqlalchemy import text

from commdesk_billing.security.jwt import Role
from tests.harness.stack import Stack


async def test_a_refund_records_where_it_came_from_and_what_it_changed(stack: Stack) -> None:
    _, paid = await stack.credited()
    rid = f"refund-{uuid.uuid4().hex}"
    r = await stack.api.post(
        f"/v1/payments/{paid['id']}/refunds",
        json={"reason": "customer asked", "amount_paise": 10000},
        headers={
            "Authorization": f"Bearer {stack.token('support-7', Role.support)}",
            "Idempotency-Key": uuid.uuid4().hex,
            "X-Request-Id": rid,
            "User-Agent": "support-desk/2.0",
        },
    )
    assert r.status_code == 202, r.text
    refund = r.json()
    async with stack.engine.connect() as conn:
        [row] = (
            await conn.execute(
                text(
                    "SELECT actor_sub, actor_role, action, request_id, host(ip) AS ip,"
                    " user_agent, channel, details, before, after FROM audit_logs"
                    " WHERE target_type = 'payment' AND target_id = :p"
                ),
                {"p": paid["id"]},
            )
        ).all()
    assert (row.actor_sub, row.actor_role, row.action, row.channel) == (
        "support-7",
        "support",
        "refund.requested",
        "http",
    )
    assert (row.request_id, row.ip, row.user_agent) == (rid, "127.0.0.1", "support-desk/2.0")
    assert row.details["refund_id"] == refund["id"]
    credits = refund["base_credits"] + refund["bonus_credits"]
    assert row.before == {
        "refunded_paise": 0,
        "refundable_paise": 30000,
        "available_credits": 3200,
    }
    assert row.after == {
        "refunded_paise": 10000,
        "refund_status": "CREATED",
        "held_credits": credits,
        "available_credits": 3200 - credits,
    }
