"""The rules that read a member's history, over the whole stack: each fires on its pattern
(failures, a duplicate, a second account on a device, a webhook mismatch, refunds, a
purchase drained into one community) and not on the ordinary purchase before it."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from commdesk_billing.security.jwt import Role
from tests.harness.mongo import MongoTarget, communities
from tests.harness.stack import Stack, StackFactory, webhook_body
from tests.modules.fraud.test_scoring import order, tight

pytestmark = pytest.mark.slow

# Each history rule at a weight below review (60), so every order opens and says what fired.
HISTORY = tight(
    fraud_failed_burst_max=2,
    fraud_failed_burst_weight=11,
    fraud_device_accounts_max=1,
    fraud_device_accounts_weight=12,
    fraud_duplicate_weight=13,
    fraud_refund_ratio_weight=14,
    fraud_drain_weight=15,
    fraud_mismatch_weight=16,
)


async def rules_of(stack: Stack, payment_id: str) -> list[Any]:
    return list(
        await stack.scalar(
            "SELECT json_build_array(score, rules) FROM fraud_assessments"
            " WHERE payment_id = :p AND stage = 'order'",
            p=payment_id,
        )
    )


async def credited(stack: Stack, tok: str, pack_code: str) -> dict[str, Any]:
    made = await order(stack, tok, pack_code=pack_code)
    assert made.status_code == 201, made.text
    await stack.pay(made.json())
    return await stack.wait_status(tok, made.json()["id"], {"CREDITED"})


async def test_history_rules_fire_on_their_patterns(
    stacks: StackFactory, mongodb: MongoTarget
) -> None:
    stack = await stacks(**HISTORY)

    # A duplicate: the same amount paid again minutes later (the first purchase: nothing).
    a = stack.token()
    first = await credited(stack, a, "pack_300")
    assert await rules_of(stack, first["id"]) == [0, []]
    again = await order(stack, a, pack_code="pack_300")
    assert await rules_of(stack, again.json()["id"]) == [13, ["duplicate_payment"]]
    other_amount = await order(stack, a, pack_code="pack_500")
    assert await rules_of(stack, other_amount.json()["id"]) == [0, []]

    # A burst of failed attempts.
    b = stack.token()
    for _ in range(2):
        made = await order(stack, b)
        assert await rules_of(stack, made.json()["id"]) == [0, []]
        await stack.pay(made.json(), outcome="failure")
        await stack.wait_status(b, made.json()["id"], {"FAILED"})
    burst = await order(stack, b)
    assert await rules_of(stack, burst.json()["id"]) == [11, ["failed_burst"]]

    # A second account on one device.
    device = f"device-{uuid.uuid4().hex[:12]}"
    c1 = await order(stack, stack.token(), device=device)
    assert await rules_of(stack, c1.json()["id"]) == [0, []]
    c2 = await order(stack, stack.token(), device=device)
    assert await rules_of(stack, c2.json()["id"]) == [12, ["device_accounts"]]

    # A webhook whose amount disagrees, recorded by payments against the buyer.
    e = stack.token()
    made = await order(stack, e)
    assert await rules_of(stack, made.json()["id"]) == [0, []]
    body = webhook_body(
        made.json()["order_id"], order_amount="1.00", payment_amount="1.00", cf_payment_id="77"
    )
    assert (await stack.signed_webhook(body)).json()["status"] == "mismatch"
    after = await order(stack, e)
    assert await rules_of(stack, after.json()["id"]) == [16, ["webhook_mismatch"]]

    # Refund abuse: two purchases, both refunded.
    f = stack.token()
    for pack in ("pack_150", "pack_300"):
        paid = await credited(stack, f, pack)
        r = await stack.refund(paid["id"])
        assert r.status_code == 202, r.text
        await stack.wait_refund(r.json()["id"], {"SUCCESS"})
    abuse = await order(stack, f, pack_code="pack_500")
    assert await rules_of(stack, abuse.json()["id"]) == [14, ["refund_abuse"]]

    # A fresh purchase drained into one community (3000 of 3200 credits: 93.75 %).
    community = f"c-{uuid.uuid4().hex[:12]}"
    async with communities(mongodb) as coll:
        await coll.replace_one(
            {"_id": community},
            {"_id": community, "name": "Chess", "owner_ids": ["o-1"], "status": "active"},
            upsert=True,
        )
    sub = f"buyer-{uuid.uuid4().hex}"
    g = stack.token(sub)
    await credited(stack, g, "pack_300")
    spent = await stack.api.post(
        f"/v1/communities/{community}/spends",
        json={"credits": 3000, "reason": "ticket"},
        headers={"Authorization": f"Bearer {g}", "Idempotency-Key": uuid.uuid4().hex},
    )
    assert spent.status_code == 201, spent.text
    drained = await order(stack, g, pack_code="pack_500")
    assert await rules_of(stack, drained.json()["id"]) == [15, ["community_drain"]]

    # Support reads each member's reasons in their profile.
    uid = await stack.scalar("SELECT id FROM users WHERE external_id = :s", s=sub)
    r = await stack.api.get(
        f"/v1/fraud/profiles/{uid}",
        headers={"Authorization": f"Bearer {stack.token('support-1', Role.support)}"},
    )
    assert r.json()["rules_fired"] == {"community_drain": 1}
