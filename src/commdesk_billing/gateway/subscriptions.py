"""Async client of Cashfree Subscriptions (cashfree.md §12): plans, subscriptions (mandates),
the authorisation, the charges raised on a mandate and their refunds.

Same base URL, credentials, transport, retries and rate-limit terms as `CashfreeClient` (the
PG API serves subscriptions). The API version is pinned to 2025-01-01 whatever the PG client
uses: v2026-01-01 restructured the create-subscription body in ways not documented (§12.3).

Amounts are integer paise here and rupees with two decimals on the wire; times are sent in
Indian time with their offset, as Cashfree states its own.

Which calls are retried: GETs, keyed writes, and writes Cashfree deduplicates by our own id
(`plan_id`, `subscription_id`, `payment_id`, a refund's `refund_id`: a repeat is refused or
answered with the first, never done twice). `manage_*` without a key is not retried.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

import httpx

from commdesk_billing.gateway.amounts import to_rupees
from commdesk_billing.gateway.subscription_models import (
    Plan,
    PlanSpec,
    PlanType,
    Subscription,
    SubscriptionPayment,
    SubscriptionPaymentType,
    SubscriptionRefund,
)
from commdesk_billing.gateway.transport import PgClient
from commdesk_billing.security.timestamps import IST

SUBSCRIPTIONS_API_VERSION = "2025-01-01"

__all__ = ["SUBSCRIPTIONS_API_VERSION", "SubscriptionsClient"]


class SubscriptionsClient(PgClient):
    API_VERSION = SUBSCRIPTIONS_API_VERSION

    # --- plans ----------------------------------------------------------------------------

    async def create_plan(
        self,
        *,
        plan_id: str,
        plan_name: str,
        max_amount_paise: int,
        plan_type: str = PlanType.ON_DEMAND,
        recurring_amount_paise: int | None = None,
        max_cycles: int | None = None,
        intervals: int | None = None,
        interval_type: str | None = None,
        note: str | None = None,
        idempotency_key: str | None = None,
    ) -> Plan:
        """Create a plan. A second plan with the same `plan_id` is refused (409)."""
        body: dict[str, Any] = {
            "plan_id": plan_id,
            "plan_name": plan_name,
            "plan_type": plan_type,
            "plan_currency": "INR",
            "plan_max_amount": to_rupees(max_amount_paise),
        }
        if recurring_amount_paise is not None:
            body["plan_recurring_amount"] = to_rupees(recurring_amount_paise)
        _put(body, "plan_max_cycles", max_cycles)
        _put(body, "plan_intervals", intervals)
        _put(body, "plan_interval_type", interval_type)
        _put(body, "plan_note", note)
        return await self._api.call(
            "subs_create_plan",
            "POST",
            "/plans",
            Plan,
            body=body,
            idempotency_key=idempotency_key,
            retry_safe=True,
        )

    async def fetch_plan(self, plan_id: str) -> Plan:
        return await self._api.call("subs_fetch_plan", "GET", f"/plans/{_seg(plan_id)}", Plan)

    # --- subscriptions --------------------------------------------------------------------

    async def create_subscription(
        self,
        *,
        subscription_id: str,
        customer_email: str,
        customer_phone: str,
        customer_name: str | None = None,
        plan_id: str | None = None,
        plan: PlanSpec | None = None,
        authorization_amount_paise: int | None = None,
        authorization_amount_refund: bool | None = None,
        payment_methods: Sequence[str] | None = None,
        return_url: str | None = None,
        notification_channels: Sequence[str] | None = None,
        session_id_expiry: datetime | None = None,
        expiry_time: datetime | None = None,
        first_charge_time: datetime | None = None,
        tags: Mapping[str, str] | None = None,
        note: str | None = None,
        idempotency_key: str | None = None,
    ) -> Subscription:
        """Create a subscription (a mandate to be authorised) on an existing plan (`plan_id`)
        or an inline one (`plan`), exactly one of them. The answer carries the
        `subscription_session_id` the payer authorises with. A second subscription with the
        same `subscription_id` is refused (409): fetch it instead."""
        if (plan_id is None) == (plan is None):
            raise ValueError("give exactly one of plan_id and plan")
        customer: dict[str, Any] = {
            "customer_email": customer_email,
            "customer_phone": customer_phone,
        }
        _put(customer, "customer_name", customer_name)
        body: dict[str, Any] = {
            "subscription_id": subscription_id,
            "customer_details": customer,
            "plan_details": {"plan_id": plan_id} if plan is None else _inline_plan(plan),
        }
        auth: dict[str, Any] = {}
        if authorization_amount_paise is not None:
            auth["authorization_amount"] = to_rupees(authorization_amount_paise)
        _put(auth, "authorization_amount_refund", authorization_amount_refund)
        if payment_methods:
            auth["payment_methods"] = list(payment_methods)
        if auth:
            body["authorization_details"] = auth
        meta: dict[str, Any] = {}
        _put(meta, "return_url", return_url)
        if notification_channels:
            meta["notification_channel"] = list(notification_channels)
        if session_id_expiry is not None:
            meta["session_id_expiry"] = wire_time(session_id_expiry)
        if meta:
            body["subscription_meta"] = meta
        if expiry_time is not None:
            body["subscription_expiry_time"] = wire_time(expiry_time)
        if first_charge_time is not None:
            body["subscription_first_charge_time"] = wire_time(first_charge_time)
        if tags:
            body["subscription_tags"] = dict(tags)
        _put(body, "subscription_note", note)
        return await self._api.call(
            "subs_create_subscription",
            "POST",
            "/subscriptions",
            Subscription,
            body=body,
            idempotency_key=idempotency_key,
            retry_safe=True,
        )

    async def fetch_subscription(self, subscription_id: str) -> Subscription:
        return await self._api.call(
            "subs_fetch_subscription",
            "GET",
            f"/subscriptions/{_seg(subscription_id)}",
            Subscription,
        )

    async def manage_subscription(
        self,
        subscription_id: str,
        action: str,
        *,
        next_scheduled_time: datetime | None = None,
        plan_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> Subscription:
        """`action`: `SubscriptionAction` CANCEL, PAUSE, ACTIVATE (with `next_scheduled_time`
        for PERIODIC plans) or CHANGE_PLAN (with `plan_id`)."""
        body: dict[str, Any] = {"subscription_id": subscription_id, "action": action}
        details: dict[str, Any] = {}
        if next_scheduled_time is not None:
            details["next_scheduled_time"] = wire_time(next_scheduled_time)
        _put(details, "plan_id", plan_id)
        if details:
            body["action_details"] = details
        return await self._api.call(
            "subs_manage_subscription",
            "POST",
            f"/subscriptions/{_seg(subscription_id)}/manage",
            Subscription,
            body=body,
            idempotency_key=idempotency_key,
        )

    # --- authorisation and charges ----------------------------------------------------------

    async def create_auth(
        self,
        *,
        subscription_id: str,
        payment_id: str,
        subscription_session_id: str,
        amount_paise: int | None = None,
        payment_method: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> SubscriptionPayment:
        """Start the mandate's authorisation (`payment_type` AUTH). Without `payment_method`
        the answer's `data.url` is the hosted page to send the payer to; with one (e.g.
        `{"upi": {"channel": "link"}}`) it is that method's app link."""
        body: dict[str, Any] = {
            "subscription_id": subscription_id,
            "payment_id": payment_id,
            "payment_type": SubscriptionPaymentType.AUTH,
            "subscription_session_id": subscription_session_id,
        }
        if amount_paise is not None:
            body["payment_amount"] = to_rupees(amount_paise)
        if payment_method is not None:
            body["payment_method"] = dict(payment_method)
        return await self._pay("subs_create_auth", body, idempotency_key)

    async def create_charge(
        self,
        *,
        subscription_id: str,
        payment_id: str,
        amount_paise: int,
        schedule_date: date | datetime | None = None,
        remarks: str | None = None,
        idempotency_key: str | None = None,
    ) -> SubscriptionPayment:
        """Raise a charge on an ACTIVE mandate. `schedule_date` is required for UPI and card
        mandates (only its date counts, §12.5); Cashfree notifies the payer first and debits
        no earlier than 24 h after that notice. The answer is the charge, not its outcome:
        that comes by webhook (`SUBSCRIPTION_PAYMENT_SUCCESS`/`_FAILED`) or `fetch_payment`."""
        body: dict[str, Any] = {
            "subscription_id": subscription_id,
            "payment_id": payment_id,
            "payment_type": SubscriptionPaymentType.CHARGE,
            "payment_amount": to_rupees(amount_paise),
        }
        if schedule_date is not None:
            body["payment_schedule_date"] = wire_date(schedule_date)
        _put(body, "payment_remarks", remarks)
        return await self._pay("subs_create_charge", body, idempotency_key)

    async def _pay(
        self, op: str, body: dict[str, Any], idempotency_key: str | None
    ) -> SubscriptionPayment:
        return await self._api.call(
            op,
            "POST",
            "/subscriptions/pay",
            SubscriptionPayment,
            body=body,
            idempotency_key=idempotency_key,
            retry_safe=True,
        )

    async def fetch_payment(self, subscription_id: str, payment_id: str) -> SubscriptionPayment:
        return await self._api.call(
            "subs_fetch_payment",
            "GET",
            f"/subscriptions/{_seg(subscription_id)}/payments/{_seg(payment_id)}",
            SubscriptionPayment,
        )

    async def list_payments(self, subscription_id: str) -> list[SubscriptionPayment]:
        return await self._api.call_list(
            "subs_list_payments",
            f"/subscriptions/{_seg(subscription_id)}/payments",
            SubscriptionPayment,
        )

    async def manage_payment(
        self,
        subscription_id: str,
        payment_id: str,
        action: str,
        *,
        next_scheduled_time: datetime | None = None,
        idempotency_key: str | None = None,
    ) -> SubscriptionPayment:
        """`action`: `PaymentAction` CANCEL (a charge not yet debited) or RETRY (a failed
        charge, at `next_scheduled_time`, which RETRY needs)."""
        body: dict[str, Any] = {
            "subscription_id": subscription_id,
            "payment_id": payment_id,
            "action": action,
        }
        if next_scheduled_time is not None:
            body["action_details"] = {"next_scheduled_time": wire_time(next_scheduled_time)}
        return await self._api.call(
            "subs_manage_payment",
            "POST",
            f"/subscriptions/{_seg(subscription_id)}/payments/{_seg(payment_id)}/manage",
            SubscriptionPayment,
            body=body,
            idempotency_key=idempotency_key,
        )

    # --- refunds of charges ------------------------------------------------------------------

    async def create_refund(
        self,
        *,
        subscription_id: str,
        payment_id: str,
        refund_id: str,
        amount_paise: int,
        note: str | None = None,
        speed: str = "STANDARD",
        cf_payment_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> SubscriptionRefund:
        """Refund (part of) a charge debited on the mandate (§12.5). UPI refunds are STANDARD
        only. Safe to repeat, as PG refunds: Cashfree keeps `refund_id` unique per
        subscription and answers a repeat with the same details with the refund it made (no
        key needed; a key would replay a first 5xx for ever). The answer is usually PENDING:
        the end comes by `SUBSCRIPTION_REFUND_STATUS` or `fetch_refund`."""
        body: dict[str, Any] = {
            "subscription_id": subscription_id,
            "payment_id": payment_id,
            "refund_id": refund_id,
            "refund_amount": to_rupees(amount_paise),
            "refund_speed": speed,
        }
        if note:
            body["refund_note"] = note
        _put(body, "cf_payment_id", cf_payment_id)
        return await self._api.call(
            "subs_create_refund",
            "POST",
            f"/subscriptions/{_seg(subscription_id)}/refunds",
            SubscriptionRefund,
            body=body,
            idempotency_key=idempotency_key,
            retry_safe=True,
        )

    async def fetch_refund(self, subscription_id: str, refund_id: str) -> SubscriptionRefund:
        return await self._api.call(
            "subs_fetch_refund",
            "GET",
            f"/subscriptions/{_seg(subscription_id)}/refunds/{_seg(refund_id)}",
            SubscriptionRefund,
        )


def wire_time(value: datetime) -> str:
    """An aware time as Cashfree writes one: Indian time, ISO 8601, with its offset."""
    if value.tzinfo is None:
        raise ValueError("times sent to Cashfree need an offset")
    return value.astimezone(IST).replace(microsecond=0).isoformat()


def wire_date(value: date | datetime) -> str:
    """A schedule date: only the date counts (§12.5); a time is sent in Indian time."""
    if isinstance(value, datetime):
        return wire_time(value)
    return datetime(value.year, value.month, value.day, tzinfo=IST).isoformat()


def _inline_plan(plan: PlanSpec) -> dict[str, Any]:
    body: dict[str, Any] = {
        "plan_name": plan.plan_name,
        "plan_type": plan.plan_type,
        "plan_currency": "INR",
        "plan_max_amount": to_rupees(plan.max_amount_paise),
    }
    if plan.recurring_amount_paise is not None:
        body["plan_amount"] = to_rupees(plan.recurring_amount_paise)
    _put(body, "plan_max_cycles", plan.max_cycles)
    _put(body, "plan_intervals", plan.intervals)
    _put(body, "plan_interval_type", plan.interval_type)
    _put(body, "plan_note", plan.note)
    return body


def _put(body: dict[str, Any], key: str, value: object) -> None:
    if value is not None:
        body[key] = value


def _seg(value: str) -> str:
    """A path segment: never let an id carry a slash."""
    return httpx.URL("/" + value).raw_path.decode().lstrip("/").replace("/", "%2F")
