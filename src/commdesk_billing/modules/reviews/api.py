"""`POST /v1/fraud/reviews/{review_id}/decision` (finance_admin): release or refund."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request

from commdesk_billing.db.engine import in_transaction
from commdesk_billing.deps import Caller, Config, Engine
from commdesk_billing.modules.fraud.schemas import DecisionIn, ReviewOut
from commdesk_billing.modules.reviews import service
from commdesk_billing.problems import documented
from commdesk_billing.security.text import sane_header

router = APIRouter(prefix="/v1/fraud", tags=["fraud"])

_PROBLEMS = documented(
    {
        401: "No valid bearer token",
        403: "Only finance_admin decides a review",
        404: "No such review",
        409: "Decided the other way already (`review_already_decided`), or the payment "
        "cannot be refunded (`payment_not_refundable`)",
        422: "Body invalid",
    }
)


@router.post(
    "/reviews/{review_id}/decision",
    response_model=ReviewOut,
    responses=_PROBLEMS,
    summary="Release a held payment's credits, or refund it (finance_admin; the same "
    "decision again answers the review as it is)",
)
async def decide(
    review_id: uuid.UUID,
    body: DecisionIn,
    request: Request,
    engine: Engine,
    settings: Config,
    caller: Caller,
) -> ReviewOut:
    rid = sane_header(request.headers.get("x-request-id"))
    row = await in_transaction(
        engine,
        lambda conn: service.decide(
            conn, settings, caller, review_id, body.decision, body.reason, request_id=rid
        ),
    )
    return ReviewOut.of(row)
