"""Reading a vendor settlement webhook (cashfree.md §14.5): its signature over the exact
bytes, then its body as a typed `VendorSettlementWebhook`, or a `Refused` that says why not.

Vendor settlement webhooks are PG webhooks (sent to the settlement webhook URLs of the PG
app), so they are signed with the PG client secret (§5.2), not the Payouts one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from commdesk_billing.gateway import signature
from commdesk_billing.gateway.signature import Refused
from commdesk_billing.gateway.split_models import VendorSettlementEvent, VendorSettlementWebhook

__all__ = ["Refused", "read_vendor_settlement_webhook"]

# PG retries for up to about 42 minutes by default (§5.7); a day leaves room for custom
# schedules. Duplicates are for deduplication, not for this window, to catch.
MAX_AGE_S = 86_400.0
MAX_FUTURE_S = 300.0


def read_vendor_settlement_webhook(
    body: bytes,
    headers: Mapping[str, str],
    secrets: Sequence[str],
    *,
    max_age_s: float = MAX_AGE_S,
    max_future_s: float = MAX_FUTURE_S,
    now_s: float | None = None,
) -> VendorSettlementWebhook:
    """`secrets`: the PG client secret first, then any being rotated out. `headers` with
    lower-case names. A signed body of another type is refused (`webhook_unexpected`)."""
    hook = signature.read_signed(
        VendorSettlementWebhook,
        body,
        headers,
        secrets,
        max_age_s=max_age_s,
        max_future_s=max_future_s,
        now_s=now_s,
    )
    if hook.type not in VendorSettlementEvent.ALL:
        raise Refused("webhook_unexpected", f"not a vendor settlement webhook: {hook.type[:60]}")
    return hook
