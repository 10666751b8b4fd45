"""POST /v1/webhooks/cashfree: Cashfree's deliveries. Unauthenticated by bearer token; the
signature is the authentication. Answers fast: verification, one insert and one outbox row.

What each delivery is answered, and why. Cashfree retries every delivery it is not answered
200 for, as its retry policy says, and a retry carries the same bytes. So:

- not signed by us (or stale): 401, nothing stored; retrying is right if our secret rotated;
- signed, whatever the body (an event, another event, or bytes that cannot be read: not JSON,
  text PostgreSQL cannot store, nested too deeply): stored and answered 200 with what became
  of it (`rejected` for the unreadable ones), since no retry could change the answer; the
  stored row is the evidence for whoever looks into it;
- nested deeper than 32 levels: refused 400 `json_too_deep` by the request hygiene before
  this route runs, signed or not. No Cashfree payload is deeper than a few levels, so this
  never stops a real delivery, and a forged one costs us no signature check.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from commdesk_billing.deps import Config, Engine
from commdesk_billing.modules.webhooks import service
from commdesk_billing.problems import MEDIA_TYPE, errors, problem_body
from commdesk_billing.security import addresses
from commdesk_billing.telemetry.metrics import WEBHOOKS_RECEIVED

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])


class WebhookReceipt(BaseModel):
    """What became of a signed delivery (the answer to Cashfree; it retries nothing it is
    answered 200 for)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"status": "accepted", "webhook_id": "2d9c4e71-0a3b-4c5d-8e6f-7a8b9c0d1e2f"}
            ]
        }
    )

    status: Literal["accepted", "duplicate", "unknown_order", "mismatch", "ignored", "rejected"] = (
        Field(
            description="accepted: handed over to be checked with Cashfree's API; duplicate: "
            "a repeat of a stored delivery; unknown_order: no order or refund of ours; "
            "mismatch: amounts or currency differ from ours (not acted on); ignored: an event "
            "that needs nothing; rejected: signed but unreadable (kept as evidence)"
        )
    )
    webhook_id: uuid.UUID = Field(description="The stored delivery's id")


# The signature headers Cashfree sends (read from the raw request, so listed here).
_SIGNED: dict[str, Any] = {
    "parameters": [
        {
            "name": "x-webhook-signature",
            "in": "header",
            "required": True,
            "description": "base64 HMAC-SHA256, with the PG client secret, of the timestamp "
            "followed by the raw body",
            "schema": {"type": "string", "maxLength": 200},
        },
        {
            "name": "x-webhook-timestamp",
            "in": "header",
            "required": True,
            "description": "Milliseconds since the epoch; accepted up to a day old "
            "(BILLING_WEBHOOK_MAX_AGE_S) and 5 minutes ahead",
            "schema": {"type": "string", "pattern": "^[0-9]{1,16}$"},
        },
    ]
}


def _refuse(status: int, code: str, title: str, detail: str) -> JSONResponse:
    return JSONResponse(
        problem_body(status=status, code=code, title=title, detail=detail),
        status_code=status,
        media_type=MEDIA_TYPE,
    )


@router.post(
    "/cashfree",
    response_model=WebhookReceipt,
    openapi_extra=_SIGNED,
    summary="Cashfree payment and refund webhooks (Cashfree only: signed with the PG client "
    "secret, no token)",
    responses={
        200: {
            "description": "Stored, or a repeat counted: what became of the delivery "
            "(`status`) and its stored id"
        },
        **errors(
            {
                400: "JSON nested more than 32 deep (`json_too_deep`), refused before the "
                "signature check",
                401: "Signature headers missing (`webhook_unsigned`), a timestamp that is not "
                "epoch milliseconds (`webhook_timestamp_invalid`), a signature that matches no "
                "configured secret (`webhook_signature_invalid`), or a timestamp outside the "
                "window (`webhook_stale`); nothing stored",
                403: "Source address not on BILLING_WEBHOOK_ALLOWED_IPS "
                "(`webhook_source_refused`); nothing stored",
                415: "A body sent as something other than JSON (`unsupported_media_type`)",
            }
        ),
    },
)
async def cashfree_webhook(request: Request, engine: Engine, settings: Config) -> Response:
    """Cashfree's payment (success, failure, user dropped) and refund status deliveries.
    The signature over the exact bytes is the authentication; a signed delivery is stored
    raw, once per identity, and answered 200 with what became of it, so Cashfree stops
    retrying it. Nothing in it is believed: an accepted delivery makes the worker ask
    Cashfree's API about the order or refund, and only that answer moves money or credits."""
    ip = addresses.client_ip(request.scope)
    if not addresses.ip_allowed(settings, ip):
        WEBHOOKS_RECEIVED.labels("ip_refused").inc()
        return _refuse(403, "webhook_source_refused", "Forbidden", "source address not allowed")
    body = await request.body()
    headers = service.headers_of(request.headers)
    try:
        receipt = await service.receive(engine, settings, body, headers, ip)
    except service.WebhookRefused as exc:
        if exc.status == 401:
            WEBHOOKS_RECEIVED.labels(exc.code).inc()
        return _refuse(exc.status, exc.code, "Webhook refused", exc.detail)
    # The bytes JSONResponse would send (compact), without its json.dumps.
    return Response(
        orjson.dumps({"status": receipt.outcome, "webhook_id": str(receipt.webhook_id)}),
        media_type="application/json",
    )
