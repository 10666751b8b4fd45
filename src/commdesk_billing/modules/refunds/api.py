"""Refund routes: request a refund of a purchase, read refunds."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Body, Query
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.db.engine import in_transaction
from commdesk_billing.deps import Caller, Config, Engine, IdemKey
from commdesk_billing.idempotency.keys import respond
from commdesk_billing.modules.refunds import auth, reads, requesting
from commdesk_billing.modules.refunds.schemas import RefundOut, RefundPage, RefundRequest
from commdesk_billing.pagination import decode_cursor, encode_cursor
from commdesk_billing.problems import errors

router = APIRouter(prefix="/v1", tags=["refunds"])

# Sent as it is by tests/contract/test_examples.py: it must be accepted.
_REFUND_EXAMPLES = {
    "partial": {
        "summary": "Refund part of a purchase",
        "value": {"amount_paise": 10000, "reason": "charged twice for the same pack"},
    },
    "everything": {
        "summary": "Refund everything refundable now",
        "value": {"reason": "member asked within the window"},
    },
}


@router.post(
    "/payments/{payment_id}/refunds",
    status_code=202,
    response_model=RefundOut,
    responses=errors(
        {
            400: "Idempotency-Key missing (`idempotency_key_required`) or malformed "
            "(`idempotency_key_invalid`)",
            403: "Not finance_admin or support, a buyer outside the refund window, or a "
            "sponsorship or subscription payment that only finance_admin refunds (`forbidden`)",
            404: "No such payment, or not the caller's (`not_found`)",
            409: "The payment was never credited (`payment_not_refundable`), or the same "
            "Idempotency-Key still running (`idempotency_key_in_use`)",
            413: "Body too large (`payload_too_large`)",
            422: "Body invalid (`validation_error`); more than is refundable now "
            "(`refund_exceeds_refundable`, with `refundable_paise`); less than one credit's "
            "value or milestones on a credit purchase (`invalid_amount`); the key reused "
            "with another body (`idempotency_key_reused`)",
        }
    ),
    summary="Refund all or part of a purchase (finance_admin, support; buyers within the "
    "configured window)",
)
async def create_refund(
    payment_id: uuid.UUID,
    body: Annotated[RefundRequest, Body(openapi_examples=_REFUND_EXAMPLES)],
    engine: Engine,
    settings: Config,
    caller: Caller,
    key: IdemKey,
) -> JSONResponse:
    """Takes the refunded credits back from the buyer's wallet at once and asks Cashfree to
    return the money; the answer (202) is the refund as `PENDING` or `CREATED`, and it ends
    `SUCCESS`, `FAILED` or `CANCELLED` when Cashfree's webhook or the sync job says so (read
    it at `/v1/refunds/{refund_id}`). The taxable part and its GST are split as on the tax
    invoice, and a credit note follows. Repeating the request with the same Idempotency-Key
    answers the same refund."""
    answer = await requesting.request_refund(engine, settings, caller, payment_id, body, key)
    return respond(answer)


@router.get(
    "/refunds/{refund_id}",
    response_model=RefundOut,
    responses=errors(
        {
            404: "No such refund, or of another member's payment (`not_found`)",
        }
    ),
    summary="One refund: its status at Cashfree, amounts and GST split",
)
async def get_refund(refund_id: uuid.UUID, engine: Engine, caller: Caller) -> RefundOut:
    """A refund by its id, for the buyer of its payment and for staff; poll it after
    asking for a refund until `status` is final. A buyer sees `requested_by` as `commdesk`
    when staff refunded them (staff ids stay internal)."""

    async def work(conn: AsyncConnection) -> RefundOut:
        refund = await reads.get_refund(conn, caller, refund_id)
        return RefundOut.of(refund, staff_view=auth.staff_view(caller))

    return await in_transaction(engine, work)


@router.get(
    "/payments/{payment_id}/refunds",
    response_model=RefundPage,
    responses=errors(
        {
            404: "No such payment, or not the caller's (`not_found`)",
            422: "`limit` out of 1..200 (`validation_error`), or a `cursor` this API did not "
            "give out (`invalid_cursor`)",
        }
    ),
    summary="A payment's refunds, newest first, and what is refundable now",
)
async def list_refunds(
    payment_id: uuid.UUID,
    engine: Engine,
    caller: Caller,
    cursor: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> RefundPage:
    """Every refund of one payment and `refundable_paise`, the most a new refund could be
    for now (what was paid, less what was refunded or is being refunded and what the
    credits already spent stand for). Pages of `limit`; pass `next_cursor` back as
    `cursor`."""
    before = decode_cursor("r", cursor) if cursor else None

    async def work(conn: AsyncConnection) -> RefundPage:
        rows, can = await reads.list_refunds(
            conn, caller, payment_id, limit=limit + 1, before=before
        )
        more = len(rows) > limit
        rows = rows[:limit]
        return RefundPage(
            data=[RefundOut.of(r, staff_view=auth.staff_view(caller)) for r in rows],
            refundable_paise=can,
            next_cursor=encode_cursor("r", rows[-1].created_at, rows[-1].id) if more else None,
        )

    return await in_transaction(engine, work)
