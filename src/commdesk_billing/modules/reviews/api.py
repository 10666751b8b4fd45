"""`POST /v1/fraud/reviews/{review_id}/decision` (finance_admin): release or refund."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Request

from commdesk_billing.db.engine import in_transaction
from commdesk_billing.deps import Caller, Config, Engine
from commdesk_billing.modules.fraud.schemas import DecisionIn, ReviewOut
from commdesk_billing.modules.reviews import service
from commdesk_billing.problems import errors
from commdesk_billing.security.text import sane_header

router = APIRouter(prefix="/v1/fraud", tags=["fraud"])

# Sent as they are by tests/contract/test_examples.py (as finance_admin): each must be
# accepted.
_DECISION_EXAMPLES: dict[str, Any] = {
    "release": {
        "summary": "Nothing wrong: credit the member",
        "value": {"decision": "release", "reason": "known member, new phone"},
    },
    "refund": {
        "summary": "Fraud: refund the whole payment",
        "value": {"decision": "refund", "reason": "stolen card reported by the bank"},
    },
}


@router.post(
    "/reviews/{review_id}/decision",
    response_model=ReviewOut,
    responses=errors(
        {
            403: "Not finance_admin (`forbidden`)",
            404: "No such review (`not_found`)",
            409: "Decided the other way already (`review_already_decided`), or the payment "
            "cannot be refunded now (`payment_not_refundable`)",
            413: "Body too large (`payload_too_large`)",
            422: "Body invalid (`validation_error`); nothing left to refund "
            "(`refund_exceeds_refundable`), or less than one credit's value "
            "(`invalid_amount`)",
        }
    ),
    summary="Release a held payment's credits, or refund the payment (finance_admin)",
)
async def decide(
    review_id: uuid.UUID,
    body: Annotated[DecisionIn, Body(openapi_examples=_DECISION_EXAMPLES)],
    request: Request,
    engine: Engine,
    settings: Config,
    caller: Caller,
) -> ReviewOut:
    """Ends a pending fraud review: `release` makes the held credits spendable at once;
    `refund` refunds the whole payment (the refund takes the held credits back and
    Cashfree returns the money; follow it at `GET /v1/payments/{payment_id}/refunds`).
    The same decision again answers the review as it is; the other one is refused. The
    decision is audited with its reason."""
    rid = sane_header(request.headers.get("x-request-id"))
    row = await in_transaction(
        engine,
        lambda conn: service.decide(
            conn, settings, caller, review_id, body.decision, body.reason, request_id=rid
        ),
    )
    return ReviewOut.of(row)
