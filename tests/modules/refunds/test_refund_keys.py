"""A purchase refund's Idempotency-Key across the upgrade that taught refunds `milestones`
(a sponsorship's): the request a key was stored for before it is still the same request."""

from __future__ import annotations

import hashlib
import json
import uuid

from sqlalchemy import text

from tests.harness.stack import Stack


async def test_a_purchase_refund_key_stored_before_milestones_still_replays(
    stack: Stack,
) -> None:
    _, payment = await stack.credited()
    key = uuid.uuid4().hex
    first = await stack.refund(payment["id"], amount_paise=100, reason="duplicate", key=key)
    assert first.status_code == 202, first.text
    # The key's row as the release before stored it: its body had no `milestones`.
    path = f"/v1/payments/{payment['id']}/refunds"
    before = json.dumps(
        {"amount_paise": 100, "reason": "duplicate"}, sort_keys=True, separators=(",", ":")
    )
    old_hash = hashlib.sha256(f"POST {path}\n{before}".encode()).hexdigest()
    async with stack.engine.begin() as conn:
        updated = await conn.execute(
            text("UPDATE idempotency_keys SET request_hash = :h WHERE scope = :s AND key = :k"),
            {"h": old_hash, "s": "finance-1", "k": key},
        )
        assert updated.rowcount == 1
    again = await stack.refund(payment["id"], amount_paise=100, reason="duplicate", key=key)
    assert again.status_code == 202, again.text
    assert again.json()["id"] == first.json()["id"]


async def test_a_refund_key_past_its_retention_replays_the_refund_not_a_500(
    stack: Stack,
) -> None:
    from datetime import timedelta

    from commdesk_billing.idempotency.keys import prune_expired

    _, payment = await stack.credited()
    key = uuid.uuid4().hex
    first = await stack.refund(payment["id"], amount_paise=100, reason="duplicate", key=key)
    assert first.status_code == 202, first.text
    await stack.execute(
        "UPDATE idempotency_keys SET created_at = now() - interval '25 hours' "
        "WHERE scope = :s AND key = :k",
        s="finance-1",
        k=key,
    )
    assert await prune_expired(stack.engine, timedelta(hours=24)) >= 1
    # The stored answer is gone; the refund keeps its own key: the same request again is
    # that refund, never a second one (nor a 500 from the refund's unique key).
    again = await stack.refund(payment["id"], amount_paise=100, reason="duplicate", key=key)
    assert again.status_code == 202, again.text
    assert again.json()["id"] == first.json()["id"]
    # Another refund under the old key is refused by the refund's own key.
    other = await stack.refund(payment["id"], amount_paise=200, reason="duplicate", key=key)
    assert other.status_code == 422, other.text
    assert other.json()["code"] == "idempotency_key_reused"
    count = await stack.scalar(
        "SELECT count(*) FROM refunds WHERE payment_id = :p", p=uuid.UUID(payment["id"])
    )
    assert count == 1
