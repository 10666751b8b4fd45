"""Order Pay (`POST /pg/orders/sessions`) and the payments of an order (cashfree.md §2.5, §3)."""

from __future__ import annotations

from typing import Any

from starlette.routing import Route

from commdesk_billing.gateway.amounts import rupees_text
from commdesk_billing.gateway.sandbox.api import Call, Reply, api
from commdesk_billing.gateway.sandbox.entities import payment_entity
from commdesk_billing.gateway.sandbox.service import Started
from commdesk_billing.gateway.sandbox.wire import Money

_METHOD_NAME = {"upi": "upi", "card": "card", "netbanking": "netbanking", "app": "app"}


def public_base(call: Call) -> str:
    configured = call.sandbox.config.public_url
    return configured or str(call.request.base_url).rstrip("/")


def pay_order_entity(started: Started, base_url: str) -> dict[str, Any]:
    payment, attempt = started.payment, started.attempt
    (kind,) = payment.method
    data: dict[str, Any] = {
        "url": None,
        "payload": None,
        "content_type": None,
        "method": None,
        "redirect_to_bank": None,
    }
    if attempt.action == "link" and kind == "upi":
        # Intent / QR: the deep links a UPI app would open.
        link = (
            f"upi://pay?pa=cashfree.sandbox@gocash&pn=Sandbox&tr={payment.cf_payment_id}"
            f"&am={rupees_text(payment.amount_paise)}&cu=INR"
        )
        data["payload"] = {app: link for app in ("default", "gpay", "phonepe", "paytm", "bhim")}
    elif attempt.action == "link":
        # Card, netbanking and app wallets: the sandbox's stand-in for the bank's (or the
        # wallet provider's) page.
        data["url"] = f"{base_url}/pg/view/payments/{payment.cf_payment_id}"
        data["method"] = "GET"
        data["redirect_to_bank"] = True
    return {
        "action": attempt.action,
        "cf_payment_id": payment.cf_payment_id,
        "channel": attempt.channel,
        "data": data,
        "payment_amount": Money(payment.amount_paise),
        "payment_method": _METHOD_NAME[kind],
    }


def pay(call: Call) -> Reply:
    started = call.sandbox.pay(call.body)
    return Reply(200, pay_order_entity(started, public_base(call)))


def list_payments(call: Call) -> Reply:
    order = call.sandbox.order(call.param("order_id"))
    payments = call.sandbox.store.order_payments(order)
    return Reply(200, [payment_entity(order, p) for p in payments])  # a bare array


def fetch_payment(call: Call) -> Reply:
    order, payment = call.sandbox.payment(call.param("order_id"), call.param("cf_payment_id"))
    return Reply(200, payment_entity(order, payment))


routes = [
    # No client credentials here: Order Pay authenticates by payment_session_id (§1.2).
    Route("/pg/orders/sessions", api(pay, auth=False, rate="pay_order"), methods=["POST"]),
    Route(
        "/pg/orders/{order_id}/payments", api(list_payments, rate="get_payments"), methods=["GET"]
    ),
    Route(
        "/pg/orders/{order_id}/payments/{cf_payment_id}",
        api(fetch_payment, rate="get_payment"),
        methods=["GET"],
    ),
]
