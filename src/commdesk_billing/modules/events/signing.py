"""The signature every outbound webhook carries, Stripe-style:

    CommDesk-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>

The timestamp is signed with the body, so a captured request cannot be replayed later than
the receiver's tolerance. `verify` is the receiver's side, exactly as docs/api.md shows it
(standard library only); the tests verify real deliveries with it.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "CommDesk-Signature"
EVENT_ID_HEADER = "CommDesk-Event-Id"
EVENT_TYPE_HEADER = "CommDesk-Event-Type"
DELIVERY_ID_HEADER = "CommDesk-Delivery-Id"
TOLERANCE_S = 300


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(
    secret: str, header: str, body: bytes, tolerance_s: int = TOLERANCE_S, now: float | None = None
) -> bool:
    """True when `header` signs `body` with `secret` within `tolerance_s` of now."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance_s:
        return False
    signed = parts["t"].encode() + b"." + body
    expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts.get("v1", ""))
