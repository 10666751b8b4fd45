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

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from commdesk_billing.deps import Config, Engine
from commdesk_billing.modules.webhooks import service
from commdesk_billing.problems import MEDIA_TYPE, problem_body
from commdesk_billing.security import addresses
from commdesk_billing.telemetry.metrics import WEBHOOKS_RECEIVED

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])


def _refuse(status: int, code: str, title: str, detail: str) -> JSONResponse:
    return JSONResponse(
        problem_body(status=status, code=code, title=title, detail=detail),
        status_code=status,
        media_type=MEDIA_TYPE,
    )


@router.post(
    "/cashfree",
    summary="Cashfree payment and refund webhooks (signed with the client secret)",
    responses={
        200: {
            "description": "Stored: accepted, duplicate, unknown_order, mismatch, ignored, or "
            "rejected (signed but unreadable)"
        },
        400: {"description": "JSON nested too deeply (refused before the signature check)"},
        401: {"description": "Missing, invalid or stale signature; nothing stored"},
        403: {"description": "Source address not on the allow-list"},
        503: {
            "description": "Not stored: the database is overloaded or unavailable "
            "(database_unavailable, Retry-After); Cashfree delivers it again"
        },
    },
)
async def cashfree_webhook(request: Request, engine: Engine, settings: Config) -> JSONResponse:
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
    return JSONResponse(
        {"status": receipt.outcome, "webhook_id": str(receipt.webhook_id)}, status_code=200
    )
