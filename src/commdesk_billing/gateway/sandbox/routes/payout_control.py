"""`/_sandbox/payout…`: the Payouts side's control API (not Cashfree's), with the Payouts
app's credentials: its faults, its settings, its webhook delivery log and what it holds."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from commdesk_billing.gateway.sandbox.api import Gate, json_response
from commdesk_billing.gateway.sandbox.config import PayoutFaults
from commdesk_billing.gateway.sandbox.payouts.entities import (
    beneficiary_entity,
    transfer_entity,
    verification_entity,
)
from commdesk_billing.gateway.sandbox.payouts.settings import PayoutSettings
from commdesk_billing.gateway.sandbox.routes.control import control
from commdesk_billing.gateway.sandbox.wire import ist_text


def faults(request: Request, gate: Gate, body: Any) -> Response:
    current = gate.sandbox.payouts.faults
    if request.method == "PATCH":
        # Whole result validated first, then applied in place: the notifier holds this object.
        merged = PayoutFaults.model_validate(current.model_dump() | (body or {}))
        for name in PayoutFaults.model_fields:
            setattr(current, name, getattr(merged, name))
    return json_response(200, current.model_dump())


def settings(request: Request, gate: Gate, body: Any) -> Response:
    payouts = gate.sandbox.payouts
    if request.method == "PATCH":
        merged = PayoutSettings.model_validate(payouts.settings.model_dump() | (body or {}))
        payouts.settings = merged
        payouts.notifier.default_url = merged.webhook_url
    return json_response(200, payouts.settings.model_dump())


def webhooks(request: Request, gate: Gate, body: Any) -> Response:
    log = gate.sandbox.payouts.notifier.log
    if request.method == "DELETE":
        log.clear()
    transfer_id = request.query_params.get("transfer_id")
    rows = [
        d.as_json("transfer_id") for d in log if transfer_id is None or d.subject_id == transfer_id
    ]
    return json_response(200, rows)


def state(request: Request, gate: Gate, body: Any) -> Response:
    payouts = gate.sandbox.payouts
    payouts.tick()
    transfers = []
    for transfer in payouts.store.transfers.values():
        plan = transfer.plan
        transfers.append(
            transfer_entity(transfer)
            | {
                "sandbox_plan": {
                    "status": plan.status,
                    "status_code": plan.status_code,
                    "pending_s": plan.pending_s,
                    "reverse_code": plan.reverse_code,
                },
                "sandbox_next_step_at": ist_text(transfer.next_at) if transfer.next_at else None,
            }
        )
    return json_response(
        200,
        {
            "beneficiaries": [beneficiary_entity(b) for b in payouts.store.beneficiaries.values()],
            "transfers": transfers,
            "verifications": [
                verification_entity(v) | {"user_id": v.user_id}
                for v in payouts.store.verifications.values()
            ],
        },
    )


routes = [
    Route("/_sandbox/payout-faults", control(faults, pairs=(True,)), methods=["GET", "PATCH"]),
    Route("/_sandbox/payout-settings", control(settings, pairs=(True,)), methods=["GET", "PATCH"]),
    Route("/_sandbox/payout-webhooks", control(webhooks, pairs=(True,)), methods=["GET", "DELETE"]),
    Route("/_sandbox/payouts", control(state, pairs=(True,)), methods=["GET"]),
]
