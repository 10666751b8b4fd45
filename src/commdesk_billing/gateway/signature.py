"""Cashfree's webhook signature: base64(HMAC-SHA256(secret, timestamp + raw body)).

The signed payload is the `x-webhook-timestamp` header followed by the exact request bytes, with
no separator. Verification must use those exact bytes: re-serialising the JSON (say `2.00` into
`2.0`) changes the signature. Both the sandbox (which signs) and the webhook receivers (which
verify) use this module, so there is one definition of the algorithm. PG and Payouts V2 sign
alike (cashfree.md §5.2, §13.1), each with its own app's secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from commdesk_billing.security.text import unstorable_text

Body = TypeVar("Body", bound=BaseModel)

# The headers of a delivery kept with it as evidence (Cashfree sends no credentials in them).
EVIDENCE_HEADERS = (
    "content-type",
    "x-webhook-signature",
    "x-webhook-timestamp",
    "x-webhook-version",
    "x-webhook-attempt",
    "x-idempotency-key",
)


def evidence(headers: Mapping[str, str], names: Sequence[str] = EVIDENCE_HEADERS) -> dict[str, str]:
    """The evidence headers (`names`) a delivery came with, each cut to 500 characters; one
    that cannot be stored is dropped (they are Cashfree's word only, not worth refusing a
    delivery for)."""
    return {
        h: headers[h][:500] for h in names if h in headers and unstorable_text(headers[h]) is None
    }


def sign(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + body, hashlib.sha256)
    return base64.b64encode(mac.digest()).decode()


def verify(secrets: Sequence[str], timestamp: str, body: bytes, signature: str) -> bool:
    """True when any of `secrets` (current first, then ones being rotated out) signed the body.

    Every candidate is compared in constant time and all are tried, so timing says nothing
    about which secret matched or how much of the signature was right.
    """
    ok = False
    given = signature.encode()
    for secret in secrets:
        ok |= hmac.compare_digest(sign(secret, timestamp, body).encode(), given)
    return ok


class Refused(Exception):
    """A delivery whose signature headers do not prove it came from Cashfree."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


def check(
    headers: Mapping[str, str],
    body: bytes,
    secrets: Sequence[str],
    *,
    max_age_s: float,
    max_future_s: float,
    now_s: float | None = None,
) -> str:
    """The `x-webhook-timestamp` of a delivery whose signature is right and whose timestamp
    lies within [now - max_age_s, now + max_future_s]; raises `Refused` otherwise.

    No replay window is documented (cashfree.md §5.2): the caller's window must be wide
    enough for Cashfree's own retries; duplicates are caught by deduplication, not here."""
    sig = headers.get("x-webhook-signature")
    ts = headers.get("x-webhook-timestamp")
    if not sig or not ts:
        raise Refused("webhook_unsigned", "x-webhook-signature and timestamp needed")
    if not (ts.isascii() and ts.isdigit()) or len(ts) > 16:
        raise Refused("webhook_timestamp_invalid", "x-webhook-timestamp is not epoch ms")
    if len(sig) > 200 or not verify(secrets, ts, body, sig):
        raise Refused("webhook_signature_invalid", "signature does not match")
    age_s = (time.time() if now_s is None else now_s) - int(ts) / 1000
    if age_s > max_age_s or -age_s > max_future_s:
        raise Refused("webhook_stale", "signature timestamp outside the window")
    return ts


def read_signed(
    model: type[Body],
    body: bytes,
    headers: Mapping[str, str],
    secrets: Sequence[str],
    *,
    max_age_s: float,
    max_future_s: float,
    now_s: float | None = None,
) -> Body:
    """A webhook's body as `model`, once its signature over the exact bytes is good (`check`);
    amounts read as Decimal, never float. Signed but unreadable is `webhook_unreadable`:
    Cashfree's word, in a shape we do not know."""
    check(headers, body, secrets, max_age_s=max_age_s, max_future_s=max_future_s, now_s=now_s)
    try:
        return model.model_validate(json.loads(body, parse_float=Decimal))
    except (ValueError, ValidationError) as exc:
        raise Refused("webhook_unreadable", f"payload unreadable: {str(exc)[:300]}") from exc
