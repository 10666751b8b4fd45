"""Async Cashfree PG client (orders, payments of an order, refunds) over httpx.

A thin client rather than Cashfree's SDK: the SDK hard-codes its hosts (so it cannot reach our
sandbox), validates responses strictly (a new enum value becomes an exception on a payment
path) and is synchronous. Here the base URL and keys come from configuration, the API version
is pinned, every call has a timeout, and calls that may be retried carry an idempotency key.

Rate limits: a 429 is retried in place only when Cashfree's `x-ratelimit-retry` is within
`max_rate_limit_wait_s`; otherwise `CashfreeRateLimited` (with `retry_after_s`) is raised at
once. Our processes build clients with that at 0 (`factory.py`): no HTTP request and no
consumer sleeps on a 429; the request answers 503 with Retry-After, the message goes to the
retry ladder, and the `rate_limit_sink` records the back-off the sync jobs honour.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import httpx
from pydantic import ValidationError

from commdesk_billing.gateway.amounts import to_rupees
from commdesk_billing.gateway.errors import CashfreeBadResponse
from commdesk_billing.gateway.models import Order, Payment, Refund
from commdesk_billing.gateway.split_client import SplitCalls, refund_split_body, split_body
from commdesk_billing.gateway.split_models import RefundShare, SplitShare
from commdesk_billing.gateway.transport import (
    MAX_RATE_LIMIT_HINT_S,
    PgClient,
    RateLimitSink,
    rate_limit_hint,
)

# Kept importable from here, where callers and tests have always found them.
__all__ = [
    "API_VERSION",
    "MAX_RATE_LIMIT_HINT_S",
    "CashfreeClient",
    "RateLimitSink",
    "rate_limit_hint",
]

API_VERSION = "2025-01-01"


class CashfreeClient(SplitCalls, PgClient):
    """PG: orders, payments, refunds; Easy Split and settlement reports (`SplitCalls`)."""

    API_VERSION = API_VERSION

    # --- orders ---------------------------------------------------------------------------

    async def create_order(
        self,
        *,
        order_id: str,
        amount_paise: int,
        customer_id: str,
        customer_phone: str,
        customer_email: str | None = None,
        customer_name: str | None = None,
        return_url: str | None = None,
        notify_url: str | None = None,
        expiry_time: str | None = None,
        note: str | None = None,
        tags: Mapping[str, str] | None = None,
        order_splits: Sequence[SplitShare] | None = None,
        idempotency_key: str | None = None,
    ) -> Order:
        """Create an order. Safe to repeat without an idempotency key: Cashfree refuses a
        second order with the same `order_id` (409). With a key, note that Cashfree replays
        the first answer for it, a 5xx included, so a key makes a failed call unrepeatable."""
        customer: dict[str, Any] = {"customer_id": customer_id, "customer_phone": customer_phone}
        if customer_email:
            customer["customer_email"] = customer_email
        if customer_name:
            customer["customer_name"] = customer_name
        meta = {k: v for k, v in (("return_url", return_url), ("notify_url", notify_url)) if v}
        body: dict[str, Any] = {
            "order_id": order_id,
            "order_amount": to_rupees(amount_paise),
            "order_currency": "INR",
            "customer_details": customer,
        }
        if meta:
            body["order_meta"] = meta
        if expiry_time:
            body["order_expiry_time"] = expiry_time
        if note:
            body["order_note"] = note
        if tags:
            body["order_tags"] = dict(tags)
        if order_splits:
            # Easy Split: each vendor's share, settled to it by Cashfree (cashfree.md §14.1).
            body["order_splits"] = split_body(order_splits)
        return await self._api.call(
            "create_order",
            "POST",
            "/orders",
            Order,
            body=body,
            idempotency_key=idempotency_key,
            retry_safe=True,
        )

    async def fetch_order(self, order_id: str) -> Order:
        return await self._api.call("fetch_order", "GET", f"/orders/{_seg(order_id)}", Order)

    async def terminate_order(self, order_id: str) -> Order:
        return await self._api.call(
            "terminate_order",
            "PATCH",
            f"/orders/{_seg(order_id)}",
            Order,
            body={"order_status": "TERMINATED"},
        )

    async def order_payments(self, order_id: str) -> list[Payment]:
        return [p for p, _ in await self.order_payments_raw(order_id)]

    async def order_payments_raw(self, order_id: str) -> list[tuple[Payment, dict[str, Any]]]:
        """Each payment with the exact object Cashfree sent (kept as evidence)."""
        data = await self._api.request(
            "order_payments", "GET", f"/orders/{_seg(order_id)}/payments"
        )
        if not isinstance(data, list) or not all(isinstance(d, dict) for d in data):
            raise CashfreeBadResponse("order_payments: expected an array of objects", body=data)
        try:
            return [(Payment.model_validate(d), _plain(d)) for d in data]
        except ValidationError as exc:
            raise CashfreeBadResponse(f"order_payments: unreadable: {exc.errors()[:3]}") from exc

    # --- refunds --------------------------------------------------------------------------

    async def create_refund(
        self,
        *,
        order_id: str,
        refund_id: str,
        amount_paise: int,
        note: str | None = None,
        speed: str = "STANDARD",
        refund_splits: Sequence[RefundShare] | None = None,
        idempotency_key: str | None = None,
    ) -> Refund:
        """Ask Cashfree to refund. Safe to repeat: Cashfree keeps `refund_id` unique per order
        and answers a repeat with the same details with the refund it made (no key needed,
        and as with orders, a key would replay a first 5xx for ever)."""
        body: dict[str, Any] = {
            "refund_id": refund_id,
            "refund_amount": to_rupees(amount_paise),
            "refund_speed": speed,
        }
        if note:
            body["refund_note"] = note
        if refund_splits:
            # What each vendor gives back; without it Cashfree takes it from the vendors in
            # proportion to their shares (cashfree.md §14.3).
            body["refund_splits"] = refund_split_body(refund_splits)
        return await self._api.call(
            "create_refund",
            "POST",
            f"/orders/{_seg(order_id)}/refunds",
            Refund,
            body=body,
            idempotency_key=idempotency_key,
            retry_safe=True,
        )

    async def fetch_refund(self, order_id: str, refund_id: str) -> Refund:
        return await self._api.call(
            "fetch_refund", "GET", f"/orders/{_seg(order_id)}/refunds/{_seg(refund_id)}", Refund
        )

    async def list_refunds(self, order_id: str) -> list[Refund]:
        return await self._api.call_list(
            "list_refunds", f"/orders/{_seg(order_id)}/refunds", Refund
        )


def _plain(value: Any) -> Any:
    """Amounts are parsed as Decimal; stored evidence keeps them as their exact decimal text."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _seg(value: str) -> str:
    """A path segment: ids are ours (`[A-Za-z0-9_-]`), but never let one carry a slash."""
    return httpx.URL("/" + value).raw_path.decode().lstrip("/").replace("/", "%2F")
