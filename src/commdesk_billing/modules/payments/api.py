"""Payments routes: the pack catalog, opening an order, reading and retrying payments."""

from __future__ import annotations

import math
import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.db.engine import in_transaction
from commdesk_billing.deps import Caller, Config, Engine, IdemKey
from commdesk_billing.errors import (
    GatewayRateLimited,
    GatewayRejected,
    GatewayUnavailable,
)
from commdesk_billing.gateway.client import CashfreeClient
from commdesk_billing.gateway.errors import CashfreeError, CashfreeRateLimited, CashfreeRejected
from commdesk_billing.idempotency.keys import respond
from commdesk_billing.modules.fraud.deps import context_of
from commdesk_billing.modules.payments import (
    auth,
    cancelling,
    listing,
    mandate_truth,
    ordering,
    service,
    verification,
)
from commdesk_billing.modules.payments import repository as repo
from commdesk_billing.modules.payments.schemas import (
    OrderRequest,
    PackList,
    PackOut,
    PaymentOut,
    PaymentPage,
)
from commdesk_billing.problems import MEDIA_TYPE, documented, domain_problem_body
from commdesk_billing.security.jwt import Scope
from commdesk_billing.security.service_scopes import for_services

router = APIRouter(prefix="/v1", tags=["payments"])

_PROBLEMS = documented(
    {
        400: "Missing or malformed Idempotency-Key",
        401: "No valid bearer token",
        403: "Caller may not do this, or fraud scoring refused the payment (`payment_blocked`)",
        404: "No such payment",
        409: "The payment cannot be retried",
        422: "Body invalid, unknown pack, amount out of range, the key reused, or a "
        "malformed X-Device-Id (`invalid_device_id`)",
        429: "Too many unpaid orders",
        502: "Cashfree refused the order",
        503: "Cashfree unavailable (repeat with the same Idempotency-Key), or rate-limiting us "
        "(`gateway_rate_limited`: repeat after Retry-After)",
    }
)


def _client(request: Request) -> CashfreeClient:
    client: CashfreeClient = request.app.state.cashfree
    return client


@router.get(
    "/packs",
    openapi_extra=for_services(Scope.wallets_read),
    response_model=PackList,
    responses=_PROBLEMS,
    summary="Credit packs on sale",
)
async def list_packs(engine: Engine, settings: Config, caller: Caller) -> PackList:
    packs = await in_transaction(engine, repo.active_packs)
    return PackList(
        packs=[PackOut.of(p) for p in packs],
        gst_mode=settings.gst_mode,
        gst_rate_bp=settings.gst_rate_bp,
    )


@router.post(
    "/payments/orders",
    status_code=201,
    response_model=PaymentOut,
    responses=_PROBLEMS,
    summary="Open a Cashfree order for a pack or a custom top-up",
)
async def create_order(
    body: OrderRequest,
    request: Request,
    engine: Engine,
    settings: Config,
    caller: Caller,
    key: IdemKey,
    device: Annotated[
        str | None,
        Header(
            alias="X-Device-Id",
            description="The frontend's device id (8-128 letters, digits or ._:-), for fraud "
            "scoring; sent once",
        ),
    ] = None,
) -> JSONResponse:
    # Declared for the documentation; `context_of` reads (and validates) every value sent.
    del device
    auth.authorize_buying(caller)
    created = await ordering.create_payment_order(
        engine, _client(request), settings, caller, body, key, screen=context_of(request)
    )
    return respond(created)


@router.post(
    "/payments/{payment_id}/retry",
    response_model=PaymentOut,
    responses=_PROBLEMS,
    summary="Pay again: on the same order while it is open, else on a new linked order",
)
async def retry_payment(
    payment_id: uuid.UUID,
    request: Request,
    engine: Engine,
    settings: Config,
    caller: Caller,
    key: IdemKey,
) -> JSONResponse:
    auth.authorize_buying(caller)
    created = await ordering.retry_failed_payment(
        engine,
        _client(request),
        settings,
        caller,
        payment_id,
        key,
        screen=context_of(request),
    )
    return respond(created)


@router.post(
    "/payments/{payment_id}/sync",
    response_model=PaymentOut,
    responses=_PROBLEMS,
    summary="Ask Cashfree now and apply its answer (finance and support)",
)
async def sync_payment(
    payment_id: uuid.UUID, request: Request, engine: Engine, settings: Config, caller: Caller
) -> PaymentOut | JSONResponse:
    auth.authorize_sync(caller)
    found = await in_transaction(engine, lambda conn: service.existing(conn, payment_id))
    try:
        if found.on_mandate:
            # A charge on a mandate: its truth is the subscription payment API.
            await mandate_truth.verify_charge(
                engine, request.app.state.subscriptions, settings, found, source="manual"
            )
        else:
            await verification.verify_payment(
                engine, _client(request), settings, payment_id, source="manual"
            )
    except CashfreeRateLimited as exc:
        # Answered now, never waited out inside the request (the client does not sleep on
        # a 429; it recorded the back-off the sync jobs honour).
        return _rate_limited(exc)
    except CashfreeRejected as exc:
        raise GatewayRejected(str(exc), gateway_status=exc.status) from exc
    except CashfreeError as exc:
        raise GatewayUnavailable("Cashfree did not answer; try again") from exc

    async def work(conn: AsyncConnection) -> PaymentOut:
        p = await service.get_payment(conn, caller, payment_id)
        return PaymentOut.of(p, service.checkout_url(settings, p))

    return await in_transaction(engine, work)


@router.post(
    "/payments/{payment_id}/cancel",
    response_model=PaymentOut,
    responses={
        **_PROBLEMS,
        202: {
            "model": PaymentOut,
            "description": "Cashfree is ending an attempt already in flight: the payment is "
            "still open and ends CANCELLED, or PAID if that attempt succeeds",
        },
        409: {
            **_PROBLEMS[409],
            "description": "Not an open checkout order (`payment_not_cancellable`; "
            "`details.status` says what it is)",
        },
    },
    summary="Cancel an open order (the buyer): terminated at Cashfree, then CANCELLED",
)
async def cancel_payment(
    payment_id: uuid.UUID, request: Request, engine: Engine, settings: Config, caller: Caller
) -> PaymentOut | JSONResponse:
    auth.authorize_buying(caller)
    try:
        done = await cancelling.cancel_order(engine, _client(request), settings, caller, payment_id)
    except CashfreeRateLimited as exc:
        return _rate_limited(exc)
    except CashfreeRejected as exc:
        raise GatewayRejected(str(exc), gateway_status=exc.status) from exc
    except CashfreeError as exc:
        raise GatewayUnavailable("Cashfree did not answer; nothing was cancelled") from exc
    out = PaymentOut.of(done.payment, service.checkout_url(settings, done.payment))
    if done.final:
        return out
    return JSONResponse(out.model_dump(mode="json"), status_code=202)


def _rate_limited(exc: CashfreeRateLimited) -> JSONResponse:
    """503 `gateway_rate_limited` with Cashfree's hint as Retry-After (whole seconds)."""
    wait = max(1, math.ceil(exc.retry_after_s))
    problem = GatewayRateLimited(
        "Cashfree is rate-limiting us; nothing was changed: ask again after Retry-After seconds",
        retry_after_s=wait,
    )
    return JSONResponse(
        domain_problem_body(problem),
        status_code=problem.status,
        media_type=MEDIA_TYPE,
        headers={"Retry-After": str(wait)},
    )


_LIST_PROBLEMS = documented(
    {
        400: "A filter that is not valid (`invalid_payment_filter`: `parameter` names it), "
        "`format` neither json nor csv (`invalid_report_format`), or a query parameter "
        "unknown or sent twice",
        401: "No valid bearer token",
        403: "A service; or a member naming `user` or asking for CSV (staff only)",
        422: "A cursor this API did not hand out (`invalid_cursor`), or a parameter of the "
        "wrong shape",
    }
)
_PAGE_EXAMPLE = {
    "data": [
        {
            "id": "0b7e4f52-8a43-4a52-9a53-2f4de0f0c1a1",
            "order_id": "cdb_5f0c2b8e9a2d4c0f8f3a7c1d2e4b6a80",
            "status": "CREDITED",
            "kind": "pack",
            "pack_code": "pack_300",
            "amount_paise": 35400,
            "payment_method": "upi",
            "credits": 330,
            "created_at": "2026-12-07T09:12:03.120000Z",
        }
    ],
    "next_cursor": "cDoyMDI2LTEyLTA3VDA5OjEyOjAzLjEyMDAwMCswMDowMHwwYjdlNGY1Mi04YTQzLTRhNTI",
}
_CSV_EXAMPLE = (
    "id,order_id,user,created_at,status,kind,channel,pack_code,payment_method,...\r\n"
    "0b7e4f52-8a43-4a52-9a53-2f4de0f0c1a1,cdb_5f0c2b8e9a2d4c0f8f3a7c1d2e4b6a80,"
    "user-81,2026-12-07T09:12:03.120000Z,CREDITED,pack,order,pack_300,upi,...\r\n"
)


def _next_link(request: Request, cursor: str) -> str:
    """The same request's next page, as a path and query (no host: it is ours)."""
    url = request.url.include_query_params(cursor=cursor)
    return f'<{url.path}?{url.query}>; rel="next"'


@router.get(
    "/payments",
    response_model=PaymentPage,
    responses={
        **_LIST_PROBLEMS,
        200: {
            "description": "A page of payments (JSON), or with `format=csv` the same rows as "
            'CSV, the next page in `Link: <…>; rel="next"`',
            "content": {
                "application/json": {"example": _PAGE_EXAMPLE},
                "text/csv": {"schema": {"type": "string"}, "example": _CSV_EXAMPLE},
            },
        },
    },
    summary="Payments, newest first: the caller's own; everyone's for finance_admin, "
    "support and auditor (filters, CSV)",
    description="A member lists their own payments. finance_admin, support and auditor list "
    "every user's, and may name one (`user`, a CommDesk subject; a member naming it gets "
    "403). Filters combine (AND): `status` (comma-separated statuses), `method` (Cashfree's "
    "method key, e.g. `upi`), `created_from` (inclusive) and `created_to` (exclusive), ISO "
    "8601 with a UTC offset. Keyset cursor as in every list. `format=csv` (staff only) answers "
    "the same rows as CSV, `limit` up to 5000, and the next page's URL in a `Link` header "
    '(`rel="next"`; none on the last page).',
)
async def list_payments(
    request: Request,
    engine: Engine,
    settings: Config,
    caller: Caller,
    cursor: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[
        int, Query(ge=1, le=listing.CSV_LIMIT, description="1-200; up to 5000 with format=csv")
    ] = 50,
    status: Annotated[
        str | None,
        Query(
            max_length=200,
            description="Comma-separated statuses, e.g. `PAID,CREDITED`",
            examples=["FAILED,USER_DROPPED"],
        ),
    ] = None,
    method: Annotated[
        str | None,
        Query(max_length=32, description="Cashfree's payment method key, e.g. `upi`, `card`"),
    ] = None,
    created_from: Annotated[
        str | None,
        Query(
            max_length=64,
            description="Created at or after, ISO 8601 with offset",
            json_schema_extra={"format": "date-time"},
        ),
    ] = None,
    created_to: Annotated[
        str | None,
        Query(
            max_length=64,
            description="Created before, ISO 8601 with offset; after `created_from`",
            json_schema_extra={"format": "date-time"},
        ),
    ] = None,
    user: Annotated[
        str | None,
        Query(min_length=1, max_length=255, description="One user's (CommDesk subject; staff)"),
    ] = None,
    format: Annotated[
        str | None,
        Query(
            description="`json` (the default) or `csv` (staff)",
            json_schema_extra={"enum": ["json", "csv"]},
        ),
    ] = None,
) -> PaymentPage | Response:
    csv = listing.wants_csv(format)
    filters = listing.parse_filters(
        status=status,
        method=method,
        created_from=created_from,
        created_to=created_to,
        user=user,
    )
    staff = listing.authorize(caller, filters, csv=csv)
    listing.check_limit(limit, csv=csv)

    async def work(conn: AsyncConnection) -> PaymentPage | Response:
        found = await listing.page(conn, caller, filters, staff=staff, cursor=cursor, limit=limit)
        if csv:
            headers = {"Content-Disposition": 'attachment; filename="payments.csv"'}
            if found.next_cursor:
                headers["Link"] = _next_link(request, found.next_cursor)
            return Response(
                await listing.csv_body(conn, settings, found.payments),
                media_type="text/csv; charset=utf-8",
                headers=headers,
            )
        return PaymentPage(
            data=[PaymentOut.of(p, service.checkout_url(settings, p)) for p in found.payments],
            next_cursor=found.next_cursor,
        )

    return await in_transaction(engine, work)
