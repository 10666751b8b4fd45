"""Payments routes: the pack catalog, opening an order, reading and retrying payments."""

from __future__ import annotations

import math
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Query, Request
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
    PAYMENT_EXAMPLE,
    OrderRequest,
    PackList,
    PackOut,
    PaymentOut,
    PaymentPage,
)
from commdesk_billing.problems import MEDIA_TYPE, domain_problem_body, errors
from commdesk_billing.security.jwt import Scope
from commdesk_billing.security.service_scopes import for_services

router = APIRouter(prefix="/v1", tags=["payments"])

# Sent as they are by tests/contract/test_examples.py: each must open an order.
_ORDER_EXAMPLES: dict[str, Any] = {
    "pack": {
        "summary": "Buy a pack from GET /v1/packs",
        "value": {"pack_code": "pack_300", "customer_phone": "9876543210"},
    },
    "top_up": {
        "summary": "A custom top-up in whole rupees (₹250), supplied in Maharashtra",
        "value": {
            "amount_paise": 25000,
            "customer_phone": "+919876543210",
            "customer_email": "asha@example.com",
            "buyer_state": "27",
        },
    },
}
_KEY = (
    "Idempotency-Key missing (`idempotency_key_required`) or malformed (`idempotency_key_invalid`)"
)
_DEVICE = "a malformed X-Device-Id (`invalid_device_id`)"


def _client(request: Request) -> CashfreeClient:
    client: CashfreeClient = request.app.state.cashfree
    return client


@router.get(
    "/packs",
    openapi_extra=for_services(Scope.wallets_read),
    response_model=PackList,
    responses=errors({403: "A service token without the `wallets:read` scope (`forbidden`)"}),
    summary="Credit packs on sale, with the GST mode and rate (people; services with wallets:read)",
)
async def list_packs(engine: Engine, settings: Config, caller: Caller) -> PackList:
    """The packs a member can buy now, in display order: each pack's price in paise, the
    credits it buys and the bonus credits on top. `gst_mode` says whether `price_paise`
    already includes GST (inclusive) or GST is added to it at checkout (exclusive). Buy one
    with `POST /v1/payments/orders` and its `code`."""
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
    responses=errors(
        {
            400: _KEY,
            403: "A service token: services buy no credits (`forbidden`); or fraud screening "
            "refused this payment (`payment_blocked`)",
            413: "Body too large (`payload_too_large`)",
            422: "Body invalid, or both or neither of `pack_code` and `amount_paise` "
            "(`validation_error`); no such pack on sale (`unknown_pack`); a top-up outside "
            "the configured range or not whole rupees (`invalid_amount`, with `min_paise` and "
            "`max_paise`); a `buyer_state` other than the billing profile's GSTIN state "
            f"(`buyer_state_conflicts_gstin`); {_DEVICE}; the key reused with another "
            "body (`idempotency_key_reused`)",
            429: "Too many unpaid orders open at once (`too_many_open_orders`, with `limit`): "
            "pay or cancel one first",
            502: "Cashfree refused the order, e.g. a phone number it does not take, or holds "
            "one that differs from ours (`gateway_rejected`, with `gateway_status`)",
            503: "Cashfree did not answer (`gateway_unavailable`, Retry-After): repeat with "
            "the same Idempotency-Key",
        }
    ),
    summary="Open a Cashfree order for a pack or a custom top-up (people, for themselves)",
)
async def create_order(
    body: Annotated[OrderRequest, Body(openapi_examples=_ORDER_EXAMPLES)],
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
    """Writes the payment and opens its order at Cashfree for the caller's own wallet:
    201 with the payment `ACTIVE` and its `payment_session_id` (and `checkout_url`), which
    the frontend hands to Cashfree's checkout. Credits arrive only once Cashfree's API
    confirms the payment (`PAID`, then `CREDITED`); read it at `/v1/payments/{order_id}`.
    The same Idempotency-Key and body answer the same order again, never a second one."""
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
    responses={
        201: {
            "model": PaymentOut,
            "description": "A new payment on a new order for the same pack or amount "
            "(`retry_of` names the old one)",
        },
        **errors(
            {
                400: _KEY,
                403: "Not the payment's buyer, or a service token (`forbidden`); or fraud "
                "screening refused the new order (`payment_blocked`)",
                404: "No such payment (`not_found`)",
                409: "Not retryable (`payment_not_retryable`): PAID, CREDITED, in REVIEW "
                "or not yet opened (CREATED), an order Cashfree reports paid, a charge on a "
                "mandate, or a sponsorship or subscription payment whose order has closed",
                422: "`payment_id` not a UUID (`validation_error`); the pack no longer on "
                "sale (`unknown_pack`) or the top-up outside today's range "
                "(`invalid_amount`); the billing profile's GSTIN now in another state "
                f"(`buyer_state_conflicts_gstin`); {_DEVICE}",
                429: "A new order is needed and too many unpaid orders are open "
                "(`too_many_open_orders`, with `limit`)",
                502: "Cashfree refused the new order (`gateway_rejected`)",
                503: "Cashfree did not answer (`gateway_unavailable`): repeat with the same "
                "Idempotency-Key",
            }
        ),
    },
    summary="Pay again (the buyer): on the same order while it is open, else on a new linked order",
)
async def retry_payment(
    payment_id: uuid.UUID,
    request: Request,
    engine: Engine,
    settings: Config,
    caller: Caller,
    key: IdemKey,
) -> JSONResponse:
    """Another go at a payment that ended FAILED, USER_DROPPED, EXPIRED or CANCELLED, or
    is still open. While Cashfree still takes payments on the order the answer is 200 with
    the same payment, `ACTIVE` again; otherwise it is 201 with a new payment on a new order
    for the same pack or amount, whose `retry_of` names the old one. Check out with the
    answer's `payment_session_id`."""
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
    responses=errors(
        {
            403: "Not finance_admin or support (`forbidden`)",
            404: "No such payment (`not_found`)",
            502: "Cashfree refused our question, e.g. it knows no such order "
            "(`gateway_rejected`, with `gateway_status`)",
            503: "Cashfree did not answer (`gateway_unavailable`), or is rate-limiting us "
            "(`gateway_rate_limited`): ask again after Retry-After; nothing was changed",
        }
    ),
    summary="Ask Cashfree about a payment now and apply its answer (finance_admin, support)",
)
async def sync_payment(
    payment_id: uuid.UUID, request: Request, engine: Engine, settings: Config, caller: Caller
) -> PaymentOut | JSONResponse:
    """What the sync job and the webhook do, done now: Cashfree's API (the order's, or the
    subscription payment API's for a charge on a mandate) is asked for the payment's truth
    and it is applied as they would apply it, so a paid payment is credited. For support
    when a member reports a payment that is stuck; the answer is the payment after it."""
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
        **errors(
            {
                403: "Not the payment's buyer, or a service token (`forbidden`)",
                404: "No such payment (`not_found`)",
                409: "Not an open checkout order, or Cashfree reports it paid or expired "
                "(`payment_not_cancellable`; `details.status` says what it is)",
                502: "Cashfree refused our question about the order (`gateway_rejected`, "
                "with `gateway_status`)",
                503: "Cashfree did not answer (`gateway_unavailable`: nothing was cancelled), "
                "or is rate-limiting us (`gateway_rate_limited`: ask again after Retry-After)",
            }
        ),
        202: {
            "model": PaymentOut,
            "description": "Cashfree is ending an attempt already in flight: the payment is "
            "still open and ends CANCELLED, or PAID if that attempt succeeds",
        },
    },
    summary="Cancel an open order (the buyer): terminated at Cashfree, then CANCELLED",
)
async def cancel_payment(
    payment_id: uuid.UUID, request: Request, engine: Engine, settings: Config, caller: Caller
) -> PaymentOut | JSONResponse:
    """Asks Cashfree to terminate the order, then applies what Cashfree says about it: 200
    with the payment `CANCELLED` (its place among the buyer's unpaid orders is free), or
    202 while an attempt already in flight is being ended (read the payment again later).
    Cancelling twice answers the cancelled payment again; no Idempotency-Key is needed."""
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


_PAGE_EXAMPLE = {
    "data": [PAYMENT_EXAMPLE],
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
        **errors(
            {
                400: "A filter that is not valid, or `limit` over 200 without `format=csv` "
                "(`invalid_payment_filter`: `parameter` names it), or `format` neither json "
                "nor csv (`invalid_report_format`)",
                403: "A service token; or a member naming `user` or asking for CSV, which are "
                "staff's (`forbidden`)",
                422: "`limit` out of 1..5000 or a parameter too long (`validation_error`), "
                "or a `cursor` this API did not give out (`invalid_cursor`)",
            }
        ),
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
    """A member lists their own payments. finance_admin, support and auditor list every
    user's, and may name one (`user`, a CommDesk subject). Filters combine (AND): `status`
    (comma-separated statuses), `method` (Cashfree's method key, e.g. `upi`), `created_from`
    (inclusive) and `created_to` (exclusive), ISO 8601 with a UTC offset; pass `next_cursor`
    back as `cursor` for the next page. `format=csv` (staff only) answers the same rows as
    CSV, `limit` up to 5000, and the next page's URL in a `Link` header (`rel="next"`; none
    on the last page)."""
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
