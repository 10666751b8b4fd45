"""`/pg/simulate`: drive an open payment to an outcome, as Cashfree's sandbox API does (§3.2),
also a subscription's authorisation or charge (`SUBS_PAYMENTS`, §12.9)."""

from __future__ import annotations

from typing import Any

from starlette.routing import Route

from commdesk_billing.gateway.sandbox.api import Call, Reply, api
from commdesk_billing.gateway.sandbox.errors import not_found
from commdesk_billing.gateway.sandbox.store import Simulation
from commdesk_billing.gateway.sandbox.validation import new_simulation


def simulation_entity(sim: Simulation) -> dict[str, Any]:
    return {
        "simulation_id": sim.simulation_id,
        "entity": sim.entity,
        "entity_id": sim.entity_id,
        "entity_simulation": {
            "payment_status": sim.payment_status,
            "payment_error_code": sim.payment_error_code,
        },
    }


def create(call: Call) -> Reply:
    body = call.body
    if isinstance(body, dict) and body.get("entity") == "SUBS_PAYMENTS":
        return Reply(200, simulation_entity(_simulate_subscription(call, body)))
    return Reply(200, simulation_entity(call.sandbox.simulate(body)))


def _simulate_subscription(call: Call, body: dict[str, Any]) -> Simulation:
    """`entity_id` is the merchant's `payment_id` of a subscription payment (§12.9); the
    checks are PG's."""
    req = new_simulation(body | {"entity": "PAYMENTS"})
    sandbox = call.sandbox
    sandbox.subscriptions.simulate(req.entity_id, req.payment_status, req.payment_error_code)
    sim = Simulation(
        simulation_id=sandbox.store.next_simulation_id(),
        entity="SUBS_PAYMENTS",
        entity_id=req.entity_id,
        payment_status=req.payment_status,
        payment_error_code=req.payment_error_code,
    )
    sandbox.store.simulations[sim.simulation_id] = sim
    return sim


def fetch(call: Call) -> Reply:
    sim = call.sandbox.store.simulations.get(call.param("simulation_id"))
    if sim is None:
        raise not_found("simulation_not_found", "simulation not found")
    return Reply(200, simulation_entity(sim))


routes = [
    Route("/pg/simulate", api(create, idempotent=True), methods=["POST"]),
    Route("/pg/simulate/{simulation_id}", api(fetch), methods=["GET"]),
]
