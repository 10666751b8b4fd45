"""`/_sandbox/...`: the sandbox's own control API (not Cashfree's). Same client credentials as
the PG API (the Payouts pair for the `/_sandbox/payout…` routes, `payout_control.py`, and
either pair for the shared clock), except
`/_sandbox/health`, which probes may call without them.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from commdesk_billing.gateway.sandbox.api import AUTH_FAILED, Gate, error_response, json_response
from commdesk_billing.gateway.sandbox.config import Faults, RateProfile
from commdesk_billing.gateway.sandbox.ratelimit import WINDOW_S
from commdesk_billing.gateway.sandbox.wire import ist_text

Control = Callable[[Request, Gate, Any], Response]


def control(
    handler: Control, *, pairs: tuple[bool, ...] = (False,)
) -> Callable[[Request], Awaitable[Response]]:
    """`pairs`: whose credentials open it, PG's (False) and/or the Payouts app's (True)."""

    async def endpoint(request: Request) -> Response:
        gate: Gate = request.app.state.gate
        if not any(gate.credentials_ok(request, payouts=p) for p in pairs):
            return error_response(401, "request_failed", AUTH_FAILED, {})
        raw = await request.body()
        try:
            body = json.loads(raw) if raw.strip() else None
        except ValueError:
            return error_response(400, "request_invalid", "request body is not valid JSON", {})
        try:
            return handler(request, gate, body)
        except ValidationError as exc:
            message = "; ".join(
                f"{'.'.join(map(str, e['loc']))} : {e['msg']}" for e in exc.errors()
            )
            return error_response(400, "request_invalid", message, {})

    return endpoint


async def health(request: Request) -> Response:
    gate: Gate = request.app.state.gate
    counts: dict[str, int] = {}
    for order in gate.sandbox.store.orders.values():
        counts[order.status.value] = counts.get(order.status.value, 0) + 1
    transfers: dict[str, int] = {}
    for transfer in gate.sandbox.payouts.store.transfers.values():
        transfers[transfer.status] = transfers.get(transfer.status, 0) + 1
    return json_response(200, {"status": "ok", "orders": counts, "transfers": transfers})


def faults(request: Request, gate: Gate, body: Any) -> Response:
    current = gate.sandbox.faults
    if request.method == "PATCH":
        # Validate the whole result first, then apply it to the live object in place: the
        # notifier and the gate hold that same object.
        merged = Faults.model_validate(current.model_dump() | (body or {}))
        for name in Faults.model_fields:
            setattr(current, name, getattr(merged, name))
    return json_response(200, current.model_dump())


class RateLimits(BaseModel):
    model_config = ConfigDict(extra="forbid")
    profile: RateProfile
    multiplier: float = Field(gt=0, le=10_000)
    # Cashfree's window is a minute; tests shorten it to see a short x-ratelimit-retry.
    window_s: float = Field(default=WINDOW_S, gt=0, le=3600)


def rate_limits(request: Request, gate: Gate, body: Any) -> Response:
    limiter = gate.limiter
    if request.method == "PATCH":
        # The window is not sticky: a PATCH that does not name it goes back to a minute.
        now = {"profile": limiter.profile, "multiplier": limiter.multiplier}
        wanted = RateLimits.model_validate(now | (body or {}))
        # Also starts fresh windows.
        limiter.configure(wanted.profile, wanted.multiplier, wanted.window_s)
    return json_response(
        200,
        {
            "profile": limiter.profile,
            "multiplier": limiter.multiplier,
            "window_s": limiter.window_s,
        },
    )


def webhooks(request: Request, gate: Gate, body: Any) -> Response:
    log = gate.sandbox.notifier.log
    if request.method == "DELETE":
        log.clear()
    order_id = request.query_params.get("order_id")
    rows = [d.as_json() for d in log if order_id is None or d.subject_id == order_id]
    return json_response(200, rows)


class Advance(BaseModel):
    model_config = ConfigDict(extra="forbid")
    advance_seconds: float = Field(ge=0, le=10 * 365 * 86_400)


def clock(request: Request, gate: Gate, body: Any) -> Response:
    sandbox = gate.sandbox
    if request.method == "POST":
        sandbox.clock.advance(Advance.model_validate(body or {}).advance_seconds)
        sandbox.payouts.tick()  # transfer steps that fell due happen now, webhooks and all
        sandbox.split.tick()  # so do KYC ends, vendor and merchant settlements
        sandbox.subscriptions.tick()  # and debits, UPI retries, expired mandate links
    return json_response(
        200,
        {
            "now": ist_text(sandbox.clock.now()),
            "offset_seconds": sandbox.clock.offset.total_seconds(),
        },
    )


routes = [
    Route("/_sandbox/health", health, methods=["GET"]),
    Route("/_sandbox/faults", control(faults), methods=["GET", "PATCH"]),
    Route("/_sandbox/rate-limits", control(rate_limits), methods=["GET", "PATCH"]),
    Route("/_sandbox/webhooks", control(webhooks), methods=["GET", "DELETE"]),
    # One clock for both products: either app's pair moves it.
    Route("/_sandbox/clock", control(clock, pairs=(False, True)), methods=["GET", "POST"]),
]
