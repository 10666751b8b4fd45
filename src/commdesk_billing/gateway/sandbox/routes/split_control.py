"""`/_sandbox/easy-split…` and `/_sandbox/settlements/run`: Easy Split's control API (not
Cashfree's), with the PG app's credentials: its settings and faults, a vendor's KYC forced,
a vendor settled now, the merchant's due payments settled now."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from commdesk_billing.gateway.sandbox.api import Gate, error_response, json_response
from commdesk_billing.gateway.sandbox.routes.control import control
from commdesk_billing.gateway.sandbox.split import entities
from commdesk_billing.gateway.sandbox.split.settings import SplitSettings


def settings(request: Request, gate: Gate, body: Any) -> Response:
    split = gate.sandbox.split
    if request.method == "PATCH":
        if body is not None and not isinstance(body, dict):
            return error_response(400, "request_invalid", "body : must be a JSON object", {})
        split.settings = SplitSettings.model_validate(split.settings.model_dump() | (body or {}))
    return json_response(200, split.settings.model_dump())


class Force(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: Literal["activate", "reject_kyc", "block"]


def _vendor_known(gate: Gate, vendor_id: str) -> Response | None:
    if vendor_id not in gate.sandbox.split.store.vendors:
        return error_response(404, "vendor_not_found", "vendor does not exist", {})
    return None


def force(request: Request, gate: Gate, body: Any) -> Response:
    vendor_id = str(request.path_params["vendor_id"])
    action = Force.model_validate(body or {}).action
    missing = _vendor_known(gate, vendor_id)
    if missing is not None:
        return missing
    vendor = gate.sandbox.split.force(vendor_id, action)
    return json_response(200, entities.vendor_entity(vendor))


def settle(request: Request, gate: Gate, body: Any) -> Response:
    vendor_id = str(request.path_params["vendor_id"])
    missing = _vendor_known(gate, vendor_id)
    if missing is not None:
        return missing
    split = gate.sandbox.split
    split.tick()
    settlement = split.settle_vendor(vendor_id)
    return json_response(
        200,
        {
            "settlement_id": settlement.settlement_id if settlement else None,
            "vendor_unsettled_paise": split.unsettled(vendor_id),
        },
    )


def run_settlements(request: Request, gate: Gate, body: Any) -> Response:
    split = gate.sandbox.split
    split.tick()
    settlement = split.reports.form(split.clock.now(), force=True)
    return json_response(
        200, split.reports.settlement_entity(settlement) if settlement else {"settlement": None}
    )


routes = [
    Route("/_sandbox/easy-split", control(settings), methods=["GET", "PATCH"]),
    Route("/_sandbox/easy-split/vendors/{vendor_id}", control(force), methods=["POST"]),
    Route("/_sandbox/easy-split/vendors/{vendor_id}/settle", control(settle), methods=["POST"]),
    Route("/_sandbox/settlements/run", control(run_settlements), methods=["POST"]),
]
