"""`/pg/plans` and `/pg/subscriptions…`: Cashfree Subscriptions (cashfree.md §12.1), behind the
same gate as PG (credentials, version, idempotency keys on POSTs, Cashfree's error body)."""

from __future__ import annotations

from starlette.routing import Route

from commdesk_billing.gateway.sandbox.api import Call, Reply, api
from commdesk_billing.gateway.sandbox.routes.payments import public_base
from commdesk_billing.gateway.sandbox.subscriptions.entities import (
    pay_answer,
    payment_entity,
    plan_entity,
    subscription_entity,
)
from commdesk_billing.gateway.sandbox.subscriptions.page import authorize_url
from commdesk_billing.gateway.sandbox.subscriptions.refunds import refund_entity


def create_plan(call: Call) -> Reply:
    return Reply(200, plan_entity(call.sandbox.subscriptions.create_plan(call.body)))


def fetch_plan(call: Call) -> Reply:
    return Reply(200, plan_entity(call.sandbox.subscriptions.plan(call.param("plan_id"))))


def create_subscription(call: Call) -> Reply:
    sub = call.sandbox.subscriptions.create_subscription(call.body)
    return Reply(200, subscription_entity(sub))


def fetch_subscription(call: Call) -> Reply:
    sub = call.sandbox.subscriptions.subscription(call.param("subscription_id"))
    return Reply(200, subscription_entity(sub))


def manage_subscription(call: Call) -> Reply:
    sub = call.sandbox.subscriptions.manage(call.param("subscription_id"), call.body)
    return Reply(200, subscription_entity(sub))


def pay(call: Call) -> Reply:
    payment, sub = call.sandbox.subscriptions.pay(call.body)
    url = None
    if payment.payment_type == "AUTH":
        url = authorize_url(public_base(call), sub.session_id, payment.payment_id)
    return Reply(200, pay_answer(payment, sub, url))


def list_payments(call: Call) -> Reply:
    payments, sub = call.sandbox.subscriptions.payments(call.param("subscription_id"))
    return Reply(200, [payment_entity(p, sub) for p in payments])


def fetch_payment(call: Call) -> Reply:
    payment, sub = call.sandbox.subscriptions.payment(
        call.param("subscription_id"), call.param("payment_id")
    )
    return Reply(200, payment_entity(payment, sub))


def manage_payment(call: Call) -> Reply:
    payment, sub = call.sandbox.subscriptions.manage_payment(
        call.param("subscription_id"), call.param("payment_id"), call.body
    )
    return Reply(200, payment_entity(payment, sub))


def create_refund(call: Call) -> Reply:
    refund = call.sandbox.subscriptions.create_refund(call.param("subscription_id"), call.body)
    return Reply(200, refund_entity(refund))


def fetch_refund(call: Call) -> Reply:
    refund = call.sandbox.subscriptions.refund(
        call.param("subscription_id"), call.param("refund_id")
    )
    return Reply(200, refund_entity(refund))


_SUB = "/pg/subscriptions/{subscription_id}"

routes = [
    Route("/pg/plans", api(create_plan, idempotent=True), methods=["POST"]),
    Route("/pg/plans/{plan_id}", api(fetch_plan), methods=["GET"]),
    Route("/pg/subscriptions", api(create_subscription, idempotent=True), methods=["POST"]),
    Route("/pg/subscriptions/pay", api(pay, idempotent=True), methods=["POST"]),
    Route(_SUB, api(fetch_subscription), methods=["GET"]),
    Route(_SUB + "/manage", api(manage_subscription, idempotent=True), methods=["POST"]),
    Route(_SUB + "/payments", api(list_payments), methods=["GET"]),
    Route(_SUB + "/payments/{payment_id}", api(fetch_payment), methods=["GET"]),
    # No idempotency key on manage-payment: Cashfree documents no 422 there (§12.1).
    Route(_SUB + "/payments/{payment_id}/manage", api(manage_payment), methods=["POST"]),
    # Rate-limited as PG's refunds (Initiate Refund / Get Refund, §8.2).
    Route(
        _SUB + "/refunds",
        api(create_refund, rate="create_refund", idempotent=True),
        methods=["POST"],
    ),
    Route(_SUB + "/refunds/{refund_id}", api(fetch_refund, rate="get_refund"), methods=["GET"]),
]
