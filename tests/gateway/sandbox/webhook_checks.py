"""Checks every received webhook must pass: headers, signature over the exact bytes, shape."""

from __future__ import annotations

import time
from typing import Any

from commdesk_billing.gateway.signature import verify
from tests.gateway.sandbox.conftest import CLIENT_SECRET
from tests.gateway.sandbox.servers import Received
from tests.gateway.sandbox.strict_models import PaymentWebhook, RefundWebhook, parse


def check_envelope(hook: Received) -> None:
    headers = hook.headers
    assert headers["content-type"] == "application/json"
    assert headers["x-webhook-version"] == "2025-01-01"
    assert int(headers["x-webhook-attempt"]) >= 1
    stamp = headers["x-webhook-timestamp"]
    assert stamp.isdigit() and abs(int(stamp) - time.time() * 1000) < 60_000  # epoch ms
    assert len(headers["x-idempotency-key"]) == 44  # base64 of 32 bytes
    assert verify([CLIENT_SECRET], stamp, hook.body, headers["x-webhook-signature"])


def payment_hook(hook: Received) -> PaymentWebhook:
    check_envelope(hook)
    return parse(PaymentWebhook, hook.body)


def refund_hook(hook: Received) -> RefundWebhook:
    check_envelope(hook)
    return parse(RefundWebhook, hook.body)


def attempts(hooks: list[Received]) -> list[int]:
    return [int(h.headers["x-webhook-attempt"]) for h in hooks]


def keys(hooks: list[Received]) -> set[Any]:
    return {h.headers["x-idempotency-key"] for h in hooks}
