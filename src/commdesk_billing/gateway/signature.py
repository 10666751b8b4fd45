"""Cashfree's webhook signature: base64(HMAC-SHA256(secret, timestamp + raw body)).

The signed payload is the `x-webhook-timestamp` header followed by the exact request bytes, with
no separator. Verification must use those exact bytes: re-serialising the JSON (say `2.00` into
`2.0`) changes the signature. Both the sandbox (which signs) and the webhook receiver (which
verifies) use this module, so there is one definition of the algorithm.
"""

from __future__ import annotations

import base64
import hashlib
import hmac


def sign(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + body, hashlib.sha256)
    return base64.b64encode(mac.digest()).decode()


def verify(secrets: list[str], timestamp: str, body: bytes, signature: str) -> bool:
    """True when any of `secrets` (current first, then ones being rotated out) signed the body.

    Every candidate is compared in constant time and all are tried, so timing says nothing
    about which secret matched or how much of the signature was right.
    """
    ok = False
    given = signature.encode()
    for secret in secrets:
        ok |= hmac.compare_digest(sign(secret, timestamp, body).encode(), given)
    return ok
