"""Subscriptions' bodies as Cashfree writes them (cashfree.md §12): `PlanEntity`,
`SubscriptionEntity`, `SubscriptionPaymentEntity`, the `/subscriptions/pay` answer and the
webhook payloads (version 2025-01-01, snake_case).

Times follow Cashfree's own samples, which differ by object: a subscription's with a space
for the `T` (`2100-01-01 05:29:59+05:30`), a payment's with an offset without its colon
(`2024-04-18T22:14:58+0530`), a webhook's `subscription_details` without an offset. Unset
text fields of the mandate are `""`, as in Cashfree's example, not null.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from commdesk_billing.gateway.sandbox.subscriptions.store import Plan, Subscription, SubsPayment
from commdesk_billing.gateway.sandbox.wire import IST, Money, ist_local_text, ist_text


def spaced_time(moment: datetime | None) -> str | None:
    return None if moment is None else ist_text(moment).replace("T", " ", 1)


def colonless_time(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    text = ist_text(moment)
    return text[:-3] + text[-2:]


def schedule_text(day: date | None) -> str | None:
    if day is None:
        return None
    return ist_text(datetime(day.year, day.month, day.day, tzinfo=IST))


def plan_entity(plan: Plan, *, inline_amount: bool = False) -> dict[str, Any]:
    amount = None if plan.recurring_amount_paise is None else Money(plan.recurring_amount_paise)
    return {
        "plan_id": plan.plan_id,
        "plan_name": plan.plan_name,
        "plan_type": plan.plan_type,
        "plan_currency": plan.currency,
        "plan_recurring_amount": amount,
        "plan_max_amount": Money(plan.max_amount_paise),
        "plan_max_cycles": plan.max_cycles,
        "plan_intervals": plan.intervals,
        "plan_interval_type": plan.interval_type,
        "plan_note": plan.note,
        "plan_status": plan.status,
    } | ({"plan_amount": amount} if inline_amount else {})


def authorization(sub: Subscription) -> dict[str, Any]:
    return {
        "authorization_amount": Money(sub.auth_amount_paise),
        "authorization_amount_refund": sub.auth_amount_refund,
        "authorization_reference": sub.auth_reference or "",
        "authorization_time": spaced_time(sub.authorized_at) or "",
        "authorization_status": sub.auth_status,
        "payment_id": sub.auth_payment_id or "",
        "payment_group": sub.auth_method or "",
        "payment_method": sub.auth_method or "",
    }


def subscription_entity(sub: Subscription) -> dict[str, Any]:
    return {
        "cf_subscription_id": sub.cf_subscription_id,
        "subscription_id": sub.subscription_id,
        "subscription_status": sub.status,
        "subscription_session_id": sub.session_id,
        # British spelling in the entity (§12.3).
        "authorisation_details": authorization(sub),
        "customer_details": {k: v for k, v in sub.customer.items() if v is not None},
        "plan_details": plan_entity(sub.plan),
        "subscription_expiry_time": spaced_time(sub.expiry_time),
        "subscription_first_charge_time": spaced_time(sub.first_charge_time),
        "subscription_meta": {"return_url": sub.meta.get("return_url")},
        "subscription_note": sub.note,
        "subscription_payment_splits": [],
        "subscription_tags": sub.tags,
        "next_schedule_date": None,
    }


def _payment_core(payment: SubsPayment, sub: Subscription) -> dict[str, Any]:
    return {
        "cf_payment_id": payment.cf_payment_id,
        "payment_id": payment.payment_id,
        "subscription_id": payment.subscription_id,
        "cf_subscription_id": sub.cf_subscription_id,
        "payment_type": payment.payment_type,
        "payment_status": payment.status,
        "payment_amount": Money(payment.amount_paise),
        "payment_initiated_date": colonless_time(payment.initiated_at),
        "payment_method": payment.method or sub.auth_method or "",
        "failure_details": (
            {"failure_reason": payment.failure_reason} if payment.failure_reason else None
        ),
    }


def payment_entity(payment: SubsPayment, sub: Subscription) -> dict[str, Any]:
    return _payment_core(payment, sub) | {
        "cf_txn_id": payment.cf_txn_id,
        "cf_order_id": None,
        "payment_remarks": payment.remarks,
        "payment_schedule_date": schedule_text(payment.schedule_date),
        "retry_attempts": payment.retry_attempts,
        "authorization_details": {
            "authorization_status": sub.auth_status,
            "authorization_reference": sub.auth_reference or "",
            "payment_method": sub.auth_method or "",
        },
    }


def pay_answer(payment: SubsPayment, sub: Subscription, url: str | None) -> dict[str, Any]:
    """`CreateSubscriptionPaymentResponse`: AUTH carries the link, CHARGE nothing."""
    data = None
    if url is not None:
        data = {"url": url, "payload": None, "content_type": None, "method": "link"}
    return _payment_core(payment, sub) | {"data": data}


def status_webhook(sub: Subscription, event_time: datetime) -> dict[str, Any]:
    plan = sub.plan
    upi = sub.auth_method == "upi"
    method: dict[str, Any] | None = None
    if sub.auth_method == "upi":
        method = {
            "upi": {
                "channel": "link",
                "upi_id": sub.payer_vpa or "",
                "upi_instrument": "",
                "upi_instrument_number": "",
                "upi_payer_account_number": "",
                "upi_payer_ifsc": "",
            }
        }
    elif sub.auth_method == "card":
        method = {"card": {"channel": "link", "card_network": "visa", "card_type": "credit_card"}}
    return {
        "data": {
            "subscription_details": {
                "cf_subscription_id": sub.cf_subscription_id,
                "subscription_id": sub.subscription_id,
                "subscription_status": sub.status,
                "subscription_expiry_time": ist_local_text(sub.expiry_time),
                "subscription_first_charge_time": (
                    ist_local_text(sub.first_charge_time) if sub.first_charge_time else None
                ),
                "subscription_tags": sub.tags,
                "next_schedule_date": None,
            },
            "customer_details": {
                "customer_name": sub.customer.get("customer_name"),
                "customer_email": sub.customer.get("customer_email"),
                "customer_phone": sub.customer.get("customer_phone"),
            },
            "plan_details": {
                "plan_id": plan.plan_id,
                "plan_name": plan.plan_name,
                "plan_type": plan.plan_type,
                "plan_max_cycles": plan.max_cycles or 0,
                "plan_recurring_amount": (
                    Money(plan.recurring_amount_paise) if plan.recurring_amount_paise else None
                ),
                "plan_max_amount": Money(plan.max_amount_paise),
                "plan_interval_type": plan.interval_type,
                "plan_intervals": plan.intervals,
                "plan_currency": plan.currency,
                "plan_note": plan.note,
                "plan_status": None,
            },
            "authorization_details": {
                "authorization_amount": Money(sub.auth_amount_paise),
                "authorization_amount_refund": sub.auth_amount_refund,
                "approve_by_time": ist_local_text(sub.link_expires_at),
                "authorization_reference": sub.auth_reference or "",
                "authorization_status": sub.auth_status,
                "authorization_time": (
                    ist_local_text(sub.authorized_at) if sub.authorized_at else None
                ),
                "payment_id": sub.auth_payment_id,
                "payment_method": method,
                "payment_group": sub.auth_method if upi or method else None,
            },
            "payment_gateway_details": {
                "gateway_name": "CASHFREE",
                "gateway_subscription_id": sub.cf_subscription_id,
                "gateway_plan_id": plan.plan_id,
            },
        },
        "event_time": ist_text(event_time),
        "type": "SUBSCRIPTION_STATUS_CHANGED",
    }


def payment_webhook(
    event_type: str, payment: SubsPayment, sub: Subscription, event_time: datetime
) -> dict[str, Any]:
    return {
        "data": payment_entity(payment, sub),
        "event_time": ist_text(event_time),
        "type": event_type,
    }
