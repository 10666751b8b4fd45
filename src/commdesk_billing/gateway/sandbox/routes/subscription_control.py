"""`/_sandbox/subscriptions…`: Subscriptions' control API (not Cashfree's), with the PG app's
credentials: settings (webhook URL, pace), the delivery log, and what the payer or the bank
does to a mandate: authorise it, revoke it, pause and resume it, and how its next debits end.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from commdesk_billing.gateway.sandbox.api import Gate, error_response, json_response
from commdesk_billing.gateway.sandbox.errors import CashfreeError
from commdesk_billing.gateway.sandbox.routes.control import control
from commdesk_billing.gateway.sandbox.subscriptions.entities import (
    payment_entity,
    subscription_entity,
)
from commdesk_billing.gateway.sandbox.subscriptions.settings import SubscriptionSettings
from commdesk_billing.gateway.sandbox.subscriptions.store import Outcome, Subscription


def settings(request: Request, gate: Gate, body: Any) -> Response:
    subs = gate.sandbox.subscriptions
    if request.method == "PATCH":
        if body is not None and not isinstance(body, dict):
            return error_response(400, "request_invalid", "body : must be a JSON object", {})
        merged = subs.settings.model_dump() | (body or {})
        subs.settings = SubscriptionSettings.model_validate(merged)
    return json_response(200, subs.settings.model_dump())


def webhooks(request: Request, gate: Gate, body: Any) -> Response:
    log = gate.sandbox.subscription_notifier.log
    if request.method == "DELETE":
        log.clear()
    wanted = request.query_params.get("subscription_id")
    rows = [d.as_json("subscription_id") for d in log if wanted is None or d.subject_id == wanted]
    return json_response(200, rows)


class ChargeOutcome(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # success; failure (a retryable decline: UPI retries it, up to `failed_attempts`
    # attempts fail); revoked / paused (the payer did it just before the debit); pending
    # (the debit never answers, until /pg/simulate ends it).
    outcome: Literal["success", "failure", "revoked", "paused", "pending"]
    failure_reason: str = Field(default="INSUFFICIENT_FUNDS", min_length=1, max_length=60)
    failed_attempts: int = Field(default=99, ge=1, le=99)


class ChargeRefusal(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str = Field(default="payment_schedule_date_invalid", pattern=r"^[a-z_]{1,60}$")
    message: str = Field(default="payment_schedule_date : is not allowed", max_length=200)
    count: int = Field(default=1, ge=1, le=20)


class Authorize(BaseModel):
    model_config = ConfigDict(extra="forbid")
    payment_method: Literal["upi", "card"] = "upi"
    outcome: Literal["approve", "decline", "drop"] = "approve"


def _subscription(gate: Gate, request: Request) -> Subscription | Response:
    sub_id = str(request.path_params["subscription_id"])
    sub = gate.sandbox.subscriptions.store.subscriptions.get(sub_id)
    if sub is None:
        return error_response(404, "subscription_does_not_exist", "subscription does not exist", {})
    return sub


def charge_outcome(request: Request, gate: Gate, body: Any) -> Response:
    found = _subscription(gate, request)
    if isinstance(found, Response):
        return found
    req = ChargeOutcome.model_validate(body or {})
    subs = gate.sandbox.subscriptions
    subs.queue_outcome(found, Outcome(req.outcome, req.failure_reason, req.failed_attempts))
    return json_response(
        200,
        {
            "subscription_id": found.subscription_id,
            "queued": [
                {
                    "outcome": o.kind,
                    "failure_reason": o.reason,
                    "failed_attempts": o.failed_attempts,
                }
                for o in found.outcomes
            ],
        },
    )


def charge_refusal(request: Request, gate: Gate, body: Any) -> Response:
    """The next `count` CHARGE requests on the mandate are answered 400 `code`, before the
    payment_id is looked up (a repeat of a charge that exists is refused too)."""
    found = _subscription(gate, request)
    if isinstance(found, Response):
        return found
    req = ChargeRefusal.model_validate(body or {})
    found.refusals.extend([(req.code, req.message)] * req.count)
    return json_response(
        200,
        {
            "subscription_id": found.subscription_id,
            "refusals": [{"code": c, "message": m} for c, m in found.refusals],
        },
    )


def payer(request: Request, gate: Gate, body: Any) -> Response:
    found = _subscription(gate, request)
    if isinstance(found, Response):
        return found
    subs = gate.sandbox.subscriptions
    action = request.url.path.rsplit("/", 1)[-1]
    try:
        subs.tick()
        if action == "revoke":
            subs.payer_revoke(found)
        elif action == "pause":
            subs.payer_pause(found)
        elif action == "resume":
            subs.payer_resume(found)
        else:
            req = Authorize.model_validate(body or {})
            payment = subs.authorize(found, req.payment_method, req.outcome)
            return json_response(
                200,
                {
                    "subscription": subscription_entity(found),
                    "payment": payment_entity(payment, found),
                },
            )
    except CashfreeError as exc:
        return error_response(exc.status, exc.code, exc.message, {})
    return json_response(200, subscription_entity(found))


_SUB = "/_sandbox/subscriptions/{subscription_id}"

routes = [
    Route("/_sandbox/subscriptions/settings", control(settings), methods=["GET", "PATCH"]),
    Route("/_sandbox/subscriptions/webhooks", control(webhooks), methods=["GET", "DELETE"]),
    Route(_SUB + "/charge-outcome", control(charge_outcome), methods=["POST"]),
    Route(_SUB + "/charge-refusal", control(charge_refusal), methods=["POST"]),
    Route(_SUB + "/authorize", control(payer), methods=["POST"]),
    Route(_SUB + "/revoke", control(payer), methods=["POST"]),
    Route(_SUB + "/pause", control(payer), methods=["POST"]),
    Route(_SUB + "/resume", control(payer), methods=["POST"]),
]
