"""`/pg/simulate`: drive an open payment to an outcome, as Cashfree's sandbox API does (§3.2)."""

from __future__ import annotations

from typing import Any

from starlette.routing import Route

from commdesk_billing.gateway.sandbox.api import Call, Reply, api
from commdesk_billing.gateway.sandbox.errors import not_found
from commdesk_billing.gateway.sandbox.store import Simulation


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
    return Reply(200, simulation_entity(call.sandbox.simulate(call.body)))


def fetch(call: Call) -> Reply:
    sim = call.sandbox.store.simulations.get(call.param("simulation_id"))
    if sim is None:
        raise not_found("simulation_not_found", "simulation not found")
    return Reply(200, simulation_entity(sim))


routes = [
    Route("/pg/simulate", api(create, idempotent=True), methods=["POST"]),
    Route("/pg/simulate/{simulation_id}", api(fetch), methods=["GET"]),
]
