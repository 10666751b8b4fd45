"""Reading a Payouts V2 webhook: its signature over the exact bytes, then its body as a typed
`TransferWebhook`, or a `Refused` that says why not.

Payouts V2 signs as PG does (cashfree.md §13.1: base64 HMAC-SHA256 of timestamp + raw body),
with the Payouts app's secret — that it is that app's and not PG's is an inference
(UNCONFIRMED), so a receiver is given the Payouts secrets only and a PG-signed body fails.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from commdesk_billing.gateway import signature
from commdesk_billing.gateway.payout_models import TransferWebhook
from commdesk_billing.gateway.signature import Refused

__all__ = ["Refused", "read_transfer_webhook"]

# What a receiver's window defaults to: Payouts retries on a fixed schedule (§5.7), well
# inside a day; duplicates are for deduplication, not for this window, to catch.
MAX_AGE_S = 86_400.0
MAX_FUTURE_S = 300.0


def read_transfer_webhook(
    body: bytes,
    headers: Mapping[str, str],
    secrets: Sequence[str],
    *,
    max_age_s: float = MAX_AGE_S,
    max_future_s: float = MAX_FUTURE_S,
    now_s: float | None = None,
) -> TransferWebhook:
    """`secrets`: the Payouts client secret first, then any being rotated out.
    `headers` with lower-case names, as Starlette and httpx give them."""
    return signature.read_signed(
        TransferWebhook,
        body,
        headers,
        secrets,
        max_age_s=max_age_s,
        max_future_s=max_future_s,
        now_s=now_s,
    )
