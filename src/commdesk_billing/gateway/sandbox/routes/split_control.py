"""`/_sandbox/easy-split…`, `/_sandbox/settlements/run` and `/_sandbox/recon/events/{id}`:
Easy Split's and the settlement reports' control API (not Cashfree's), with the PG app's
credentials: its settings and faults, a vendor's KYC forced, a vendor settled now, the
merchant's due payments settled now, and faults planted in the merchant's reports (for
reconciliation tests: an event dropped, its amount changed, held unsettled, settled twice)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
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


class Plant(BaseModel):
    """A fault in the merchant's reports, on one event (a payment's cf_payment_id or a
    refund's cf_refund_id): `drop` Cashfree never recorded it; `amount` it recorded
    `amount_paise` instead; `hold` no settlement takes it; `settle_again` a second
    settlement pays it again (it must be settled already)."""

    model_config = ConfigDict(extra="forbid")
    action: Literal["drop", "amount", "hold", "settle_again"]
    amount_paise: int | None = Field(default=None, ge=1, le=10**12)


def plant(request: Request, gate: Gate, body: Any) -> Response:
    event_id = str(request.path_params["event_id"])
    wanted = Plant.model_validate(body or {})
    split = gate.sandbox.split
    split.tick()
    event = split.store.events.get(event_id)
    if event is None:
        return error_response(404, "event_not_found", "no report event has this id", {})
    if wanted.action == "drop":
        del split.store.events[event_id]
        return json_response(200, {"event_id": event_id, "dropped": True})
    if wanted.action == "amount":
        if wanted.amount_paise is None:
            return error_response(400, "request_invalid", "amount_paise : is required", {})
        event.amount_paise = wanted.amount_paise
    elif wanted.action == "hold":
        if event.settlement_id is not None:
            return error_response(409, "event_settled", "the event is settled already", {})
        event.held = True
    else:
        if event.settlement_id is None:
            return error_response(409, "event_unsettled", "the event is not settled yet", {})
        again = split.reports.settle_again(event, split.clock.now())
        return json_response(200, split.reports.settlement_entity(again))
    return json_response(
        200,
        {
            "event_id": event_id,
            "amount_paise": event.amount_paise,
            "held": event.held,
            "cf_settlement_id": event.settlement_id,
        },
    )


routes = [
    Route("/_sandbox/easy-split", control(settings), methods=["GET", "PATCH"]),
    Route("/_sandbox/easy-split/vendors/{vendor_id}", control(force), methods=["POST"]),
    Route("/_sandbox/easy-split/vendors/{vendor_id}/settle", control(settle), methods=["POST"]),
    Route("/_sandbox/settlements/run", control(run_settlements), methods=["POST"]),
    Route("/_sandbox/recon/events/{event_id}", control(plant), methods=["POST"]),
]
