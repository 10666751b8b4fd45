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
