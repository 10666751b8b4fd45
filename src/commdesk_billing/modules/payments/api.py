"""Payments routes: the pack catalog, opening an order, reading and retrying payments."""

from __future__ import annotations

import math
import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse
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
from commdesk_billing.modules.users import service as users
from commdesk_billing.pagination import decode_cursor, encode_cursor
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


@router.get("/payments/{payment_id}", response_model=PaymentOut, responses=_PROBLEMS)
async def get_payment(
    payment_id: uuid.UUID, engine: Engine, settings: Config, caller: Caller
) -> PaymentOut:
    async def work(conn: AsyncConnection) -> PaymentOut:
        p = await service.get_payment(conn, caller, payment_id)
        return PaymentOut.of(p, service.checkout_url(settings, p))

    return await in_transaction(engine, work)


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


@router.get(
    "/payments",
    response_model=PaymentPage,
    responses=_PROBLEMS,
    summary="The caller's own payments, newest first (keyset cursor)",
)
async def list_payments(
    engine: Engine,
    settings: Config,
    caller: Caller,
    cursor: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> PaymentPage:
    auth.authorize_buying(caller)
    before = decode_cursor("p", cursor) if cursor else None

    async def work(conn: AsyncConnection) -> PaymentPage:
        user_id = await users.user_id_for(conn, caller.sub)
        if user_id is None:
            return PaymentPage(data=[], next_cursor=None)
        rows = await repo.list_for_user(conn, user_id, limit=limit + 1, before=before)
        more = len(rows) > limit
        rows = rows[:limit]
        return PaymentPage(
            data=[PaymentOut.of(p, service.checkout_url(settings, p)) for p in rows],
            next_cursor=encode_cursor("p", rows[-1].created_at, rows[-1].id) if more else None,
        )

    return await in_transaction(engine, work)
