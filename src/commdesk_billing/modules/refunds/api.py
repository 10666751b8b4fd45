"""Refund routes: request a refund of a purchase, read refunds."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.db.engine import in_transaction
from commdesk_billing.deps import Caller, Config, Engine, IdemKey
from commdesk_billing.idempotency.keys import respond
from commdesk_billing.modules.refunds import auth, reads, requesting
from commdesk_billing.modules.refunds.schemas import RefundOut, RefundPage, RefundRequest
from commdesk_billing.pagination import decode_cursor, encode_cursor
from commdesk_billing.problems import documented

router = APIRouter(prefix="/v1", tags=["refunds"])

_PROBLEMS = documented(
    {
        400: "Missing or malformed Idempotency-Key",
        401: "No valid bearer token",
        403: "Caller may not refund this payment",
        404: "No such payment or refund",
        409: "Payment not refundable (not credited), or the same key in flight",
        422: "Body invalid, the key reused, or more than is refundable (see refundable_paise)",
    }
)


@router.post(
    "/payments/{payment_id}/refunds",
    status_code=202,
    response_model=RefundOut,
    responses=_PROBLEMS,
    summary="Refund all or part of a purchase (finance_admin, support; buyers within the "
    "configured window)",
)
async def create_refund(
    payment_id: uuid.UUID,
    body: RefundRequest,
    engine: Engine,
    settings: Config,
    caller: Caller,
    key: IdemKey,
) -> JSONResponse:
    answer = await requesting.request_refund(engine, settings, caller, payment_id, body, key)
    return respond(answer)


@router.get("/refunds/{refund_id}", response_model=RefundOut, responses=_PROBLEMS)
async def get_refund(refund_id: uuid.UUID, engine: Engine, caller: Caller) -> RefundOut:
    async def work(conn: AsyncConnection) -> RefundOut:
        refund = await reads.get_refund(conn, caller, refund_id)
        return RefundOut.of(refund, staff_view=auth.staff_view(caller))

    return await in_transaction(engine, work)


@router.get(
    "/payments/{payment_id}/refunds",
    response_model=RefundPage,
    responses=_PROBLEMS,
    summary="A payment's refunds, newest first, and what is refundable now",
)
async def list_refunds(
    payment_id: uuid.UUID,
    engine: Engine,
    caller: Caller,
    cursor: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> RefundPage:
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
