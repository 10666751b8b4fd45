"""`/pg/orders/{order_id}/refunds` (cashfree.md §4)."""

from __future__ import annotations

from starlette.routing import Route

from commdesk_billing.gateway.sandbox.api import Call, Reply, api
from commdesk_billing.gateway.sandbox.entities import refund_entity


def create(call: Call) -> Reply:
    return Reply(200, refund_entity(call.sandbox.create_refund(call.param("order_id"), call.body)))


def list_refunds(call: Call) -> Reply:
    order = call.sandbox.order(call.param("order_id"))
    return Reply(200, [refund_entity(r) for r in call.sandbox.store.order_refunds(order)])


def fetch(call: Call) -> Reply:
    return Reply(
        200, refund_entity(call.sandbox.refund(call.param("order_id"), call.param("refund_id")))
    )


routes = [
    Route(
        "/pg/orders/{order_id}/refunds",
        api(create, rate="create_refund", idempotent=True),
        methods=["POST"],
    ),
    Route("/pg/orders/{order_id}/refunds", api(list_refunds, rate="get_refund"), methods=["GET"]),
    Route(
        "/pg/orders/{order_id}/refunds/{refund_id}", api(fetch, rate="get_refund"), methods=["GET"]
    ),
]
