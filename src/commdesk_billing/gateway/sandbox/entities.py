"""Response and webhook bodies, in the 2025-01-01 shapes of cashfree.md §2.2, §3.1, §4.2, §5.

Every version the sandbox accepts gets these shapes: ids are strings, timestamps IST, amounts
`Money` (two decimals on the wire).
"""

from __future__ import annotations

from typing import Any

from commdesk_billing.gateway.sandbox.store import Failure, Order, Payment, Refund
from commdesk_billing.gateway.sandbox.wire import Money, ist_text

CUSTOMER_FIELDS = (
    "customer_id",
    "customer_name",
    "customer_email",
    "customer_phone",
    "customer_uid",
    "customer_bank_account_number",
    "customer_bank_ifsc",
    "customer_bank_code",
)


def order_entity(order: Order) -> dict[str, Any]:
    return {
        "cf_order_id": order.cf_order_id,
        "created_at": ist_text(order.created_at),
        "customer_details": {k: order.customer.get(k) for k in CUSTOMER_FIELDS},
        "entity": "order",
        "order_amount": Money(order.amount_paise),
        "order_currency": order.currency,
        "order_expiry_time": ist_text(order.expiry),
        "order_id": order.order_id,
        "order_meta": {
            "return_url": order.meta.get("return_url"),
            "notify_url": order.meta.get("notify_url"),
            "payment_methods": order.meta.get("payment_methods"),
        },
        "order_note": order.note,
        "order_splits": order.splits,
        "order_status": str(order.status),
        "order_tags": order.tags,
        "payment_session_id": order.payment_session_id,
        "cart_details": order.cart_details,
        "terminal_data": None,
    }


def _error_details(failure: Failure | None) -> dict[str, Any] | None:
    if failure is None:
        return None
    return {
        "error_code": failure.code,
        "error_description": failure.description,
        "error_reason": failure.reason,
        "error_source": failure.source,
        "error_code_raw": failure.code,
        "error_description_raw": failure.description,
    }


def _gateway_details(order: Order, payment: Payment) -> dict[str, Any]:
    return {
        "gateway_name": "CASHFREE",
        "gateway_order_id": order.cf_order_id,
        "gateway_payment_id": payment.cf_payment_id,
        "gateway_order_reference_id": None,
        "gateway_settlement": "CASHFREE",
        "gateway_status_code": None,
        "gateway_reference_name": None,
    }


def payment_entity(order: Order, payment: Payment) -> dict[str, Any]:
    completed = payment.completed_at
    return {
        "auth_id": None,
        "authorization": None,
        "bank_reference": payment.bank_reference,
        "cf_payment_id": payment.cf_payment_id,
        "entity": "payment",
        "error_details": _error_details(payment.failure),
        "international_payment": {"international": False},
        "is_captured": payment.status == "SUCCESS",
        "order_amount": Money(order.amount_paise),
        "order_currency": order.currency,
        "order_id": order.order_id,
        "payment_amount": Money(payment.amount_paise),
        "payment_completion_time": ist_text(completed) if completed else None,
        "payment_currency": payment.currency,
        "payment_gateway_details": _gateway_details(order, payment),
        "payment_group": payment.group,
        "payment_message": payment.message,
        "payment_method": payment.method,
        "payment_status": str(payment.status),
        "payment_surcharge": None,
        "payment_time": ist_text(payment.started_at),
    }


def refund_entity(refund: Refund) -> dict[str, Any]:
    return {
        "cf_payment_id": refund.cf_payment_id,
        "cf_refund_id": refund.cf_refund_id,
        "created_at": ist_text(refund.created_at),
        "entity": "refund",
        "metadata": None,
        "order_id": refund.order_id,
        "processed_at": ist_text(refund.processed_at) if refund.processed_at else None,
        "refund_amount": Money(refund.amount_paise),
        "refund_arn": refund.arn,
        "refund_charge": Money(0),
        "refund_currency": refund.currency,
        "refund_id": refund.refund_id,
        "refund_mode": refund.speed,
        "refund_note": refund.note,
        "refund_speed": {
            "requested": refund.speed,
            "accepted": refund.speed,
            "processed": refund.speed if refund.processed_at else None,
            "message": None,
        },
        "refund_splits": [
            {"vendor_id": v, "amount": Money(p), "percentage": None, "tags": None}
            for v, p in (refund.splits if refund.explicit_splits else [])
        ],
        "refund_status": str(refund.status),
        "refund_type": "MERCHANT_INITIATED",
        "status_description": refund.description,
    }


def payment_webhook(order: Order, payment: Payment, event_time: str) -> dict[str, Any]:
    """PAYMENT_{SUCCESS,FAILED,USER_DROPPED}_WEBHOOK, version 2025-01-01 (cashfree.md §5.4)."""
    kind = {"SUCCESS": "SUCCESS", "FAILED": "FAILED", "USER_DROPPED": "USER_DROPPED"}[
        str(payment.status)
    ]
    data: dict[str, Any] = {
        "order": {
            "order_id": order.order_id,
            "order_amount": Money(order.amount_paise),
            "order_currency": order.currency,
            "order_tags": order.tags,
        },
        "payment": {
            "cf_payment_id": payment.cf_payment_id,
            "payment_status": str(payment.status),
            "payment_amount": Money(payment.amount_paise),
            "payment_currency": payment.currency,
            "payment_message": payment.message,
            "payment_time": ist_text(payment.started_at),
            "bank_reference": payment.bank_reference,
            "auth_id": None,
            "payment_method": payment.method,
            "payment_group": payment.group,
            "international_payment": {"international": False},
            "payment_surcharge": None,
        },
        "customer_details": {
            k: order.customer.get(k)
            for k in ("customer_name", "customer_id", "customer_email", "customer_phone")
        },
    }
    if payment.failure is not None:
        data["error_details"] = _error_details(payment.failure)
    data["payment_gateway_details"] = _gateway_details(order, payment)
    data["payment_offers"] = None
    return {"data": data, "event_time": event_time, "type": f"PAYMENT_{kind}_WEBHOOK"}


def refund_webhook(refund: Refund, event_time: str) -> dict[str, Any]:
    """REFUND_STATUS_WEBHOOK (cashfree.md §5.5), with string ids like the REST entity."""
    return {
        "data": {
            "refund": {
                "cf_refund_id": refund.cf_refund_id,
                "cf_payment_id": refund.cf_payment_id,
                "refund_id": refund.refund_id,
                "order_id": refund.order_id,
                "refund_amount": Money(refund.amount_paise),
                "refund_currency": refund.currency,
                # The docs' sample capitalises this one, unlike the REST entity.
                "entity": "Refund",
                "refund_type": "MERCHANT_INITIATED",
                "refund_arn": refund.arn,
                "refund_status": str(refund.status),
                "status_description": refund.description,
                "created_at": ist_text(refund.created_at),
                "processed_at": ist_text(refund.processed_at) if refund.processed_at else None,
                "refund_charge": Money(0),
                "refund_note": refund.note,
                # The webhook names the vendor `merchantVendorId` (§5.5), REST `vendor_id`.
                "refund_splits": [
                    {"merchantVendorId": v, "amount": Money(p), "percentage": None}
                    for v, p in (refund.splits if refund.explicit_splits else [])
                ],
                "metadata": None,
                "refund_mode": refund.speed,
            }
        },
        "event_time": event_time,
        "type": "REFUND_STATUS_WEBHOOK",
    }
