"""`/pg/orders`: create, fetch, terminate (cashfree.md §2)."""

from __future__ import annotations

from starlette.routing import Route

from commdesk_billing.gateway.sandbox.api import Call, Reply, api
from commdesk_billing.gateway.sandbox.entities import order_entity


def create(call: Call) -> Reply:
    return Reply(200, order_entity(call.sandbox.create_order(call.body)))  # 200, not 201


def fetch(call: Call) -> Reply:
    return Reply(200, order_entity(call.sandbox.order(call.param("order_id"))))


def terminate(call: Call) -> Reply:
    return Reply(200, order_entity(call.sandbox.terminate(call.param("order_id"), call.body)))


routes = [
    Route("/pg/orders", api(create, rate="create_order", idempotent=True), methods=["POST"]),
    Route("/pg/orders/{order_id}", api(fetch, rate="get_order"), methods=["GET"]),
    Route("/pg/orders/{order_id}", api(terminate), methods=["PATCH"]),
]
