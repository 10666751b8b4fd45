"""`/pg/easy-split/...`: vendors, their balances and an order's split recon (cashfree.md §6.1)."""

from __future__ import annotations

from starlette.routing import Route

from commdesk_billing.gateway.sandbox.api import Call, Reply, api
from commdesk_billing.gateway.sandbox.split import entities


def create(call: Call) -> Reply:
    split = call.sandbox.split
    split.tick()
    return Reply(200, entities.vendor_created(split.create_vendor(call.body)))


def fetch(call: Call) -> Reply:
    return Reply(200, entities.vendor_entity(call.sandbox.split.vendor(call.param("vendor_id"))))


def update(call: Call) -> Reply:
    vendor = call.sandbox.split.update_vendor(call.param("vendor_id"), call.body)
    return Reply(200, entities.vendor_created(vendor))


def balances(call: Call) -> Reply:
    return Reply(200, call.sandbox.split.balance(call.param("vendor_id")))


def order_recon(call: Call) -> Reply:
    order = call.sandbox.order(call.param("order_id"))
    return Reply(200, call.sandbox.split.order_recon(order))


routes = [
    Route("/pg/easy-split/vendors", api(create, idempotent=True), methods=["POST"]),
    Route("/pg/easy-split/vendors/{vendor_id}", api(fetch), methods=["GET"]),
    Route("/pg/easy-split/vendors/{vendor_id}", api(update), methods=["PATCH"]),
    Route("/pg/easy-split/vendors/{vendor_id}/balances", api(balances), methods=["GET"]),
    Route("/pg/easy-split/orders/{order_id}", api(order_recon), methods=["GET"]),
]
