"""Wallet routes: parse, authorize, call the service, shape the answer.

Every route runs its work through `in_transaction` (or `run_keyed` for money-moving POSTs),
so the transaction has committed before the response is sent.
"""

from __future__ import annotations

import contextvars
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.db.engine import in_transaction
from commdesk_billing.deps import Caller, Config, Engine, IdemKey
from commdesk_billing.errors import InvalidAmount, InvalidCursor
from commdesk_billing.idempotency.keys import (
    Answer,
    KeyedRequest,
    Work,
    respond,
    respond_content,
    run_keyed,
)
from commdesk_billing.modules.audit import service as audit
from commdesk_billing.modules.wallet import auth
from commdesk_billing.modules.wallet import service as ws
from commdesk_billing.modules.wallet.debits import Debit
from commdesk_billing.modules.wallet.http_debits import DebitCall, batcher_of
from commdesk_billing.modules.wallet.model import LotSource
from commdesk_billing.modules.wallet.schemas import (
    CaptureRequest,
    DebitRequest,
    GrantRequest,
    HoldOut,
    HoldRequest,
    OperationOut,
    ReleaseRequest,
    TransactionOut,
    TransactionPage,
    WalletOut,
    decode_cursor,
    encode_cursor,
)
from commdesk_billing.problems import errors
from commdesk_billing.security.jwt import Scope
from commdesk_billing.security.service_scopes import for_services
from commdesk_billing.security.text import sane_header
from commdesk_billing.telemetry import aftercommit
from commdesk_billing.telemetry.metrics import WALLET_OPERATIONS

router = APIRouter(prefix="/v1", tags=["wallets"])

# Each route names its own errors (problems.errors); 401, 429 and 503 are added for all.
_READ_ERRORS = errors(
    {
        403: "The caller may not read this wallet (`forbidden`)",
        404: "No such wallet (`not_found`)",
    }
)
_KEYED = {
    400: "Idempotency-Key missing (`idempotency_key_required`) or malformed "
    "(`idempotency_key_invalid`)",
    409: "A request with the same Idempotency-Key is still running (`idempotency_key_in_use`)",
    413: "Body too large (`payload_too_large`)",
    422: "Body invalid (`validation_error`), more credits than one operation may move "
    "(`invalid_amount`), or the key reused with another body (`idempotency_key_reused`)",
}

# A request body example for each money-moving route: sent as it is by the tests
# (tests/contract/test_examples.py), so each must be accepted.
_DEBIT_EXAMPLE = {
    "credits": 40,
    "reason": "ai_summary",
    "source_id": "msg-8812",
    "metadata": {"feature": "summary"},
}
_GRANT_EXAMPLE = {
    "credits": 250,
    "reason": "goodwill: delayed payout",
    "expires_at": "2027-03-31T23:59:59+05:30",
}
_HOLD_EXAMPLE = {"credits": 100, "reason": "video_render", "ttl_seconds": 900}


def _example(summary: str, value: dict[str, object]) -> dict[str, Any]:
    return {"default": {"summary": summary, "value": value}}


def _op_answer(
    conn: AsyncConnection, status: int, result: ws.OperationResult, operation: str
) -> Answer:
    if not result.replayed:
        # Once the transaction commits: a retried attempt, or one rolled back, did nothing.
        aftercommit.count(conn, WALLET_OPERATIONS.labels(operation, "ok"))
    out = OperationOut(
        wallet=WalletOut.of(result.wallet),
        transaction=TransactionOut.of(result.line),
        hold=HoldOut.of(result.hold) if result.hold else None,
    )
    return Answer(status, out.model_dump(mode="json"))


async def _run_keyed(
    engine: Engine, request: Request, caller: Caller, key: str, body: BaseModel, work: Work
) -> JSONResponse:
    """Run a money-moving request once per (caller, Idempotency-Key); see idempotency."""
    keyed = KeyedRequest.of(request, caller.sub, key, body)
    return respond(await run_keyed(engine, keyed, work))


def _check_limit(settings: Config, credits: int | None) -> None:
    if credits is not None and credits > settings.max_credits_per_operation:
        raise InvalidAmount(
            f"at most {settings.max_credits_per_operation} credits per operation",
            max_credits=settings.max_credits_per_operation,
        )


@router.get(
    "/wallets/me",
    response_model=WalletOut,
    responses=errors({403: "A service token: services have no wallet of their own (`forbidden`)"}),
    summary="The caller's own wallet (created on first use)",
)
async def my_wallet(engine: Engine, caller: Caller) -> WalletOut:
    """The wallet of the member the bearer token names, made empty the first time it is
    asked for: a frontend calls this after sign-in to show the balance. `available_credits`
    can be spent now; `locked_credits` are held by open holds; `pending_credits` are bought
    but held for a fraud review."""
    auth.authorize_own_wallet(caller)
    wallet = await in_transaction(
        engine,
        lambda conn: ws.get_or_create_user_wallet(
            conn, caller.sub, email=caller.email, name=caller.name
        ),
    )
    return WalletOut.of(wallet)


@router.get(
    "/wallets/{wallet_id}",
    openapi_extra=for_services(Scope.wallets_read),
    response_model=WalletOut,
    responses=_READ_ERRORS,
    summary="One wallet by id (its owner, staff, services with wallets:read)",
)
async def get_wallet(wallet_id: uuid.UUID, engine: Engine, caller: Caller) -> WalletOut:
    """A wallet's balances by its id. Members read only their own; finance staff, support
    and auditors read any; a service needs the `wallets:read` scope."""

    async def work(conn: AsyncConnection) -> WalletOut:
        wallet = await ws.get_wallet(conn, wallet_id)
        await auth.authorize_wallet_read(conn, caller, wallet)
        return WalletOut.of(wallet)

    return await in_transaction(engine, work)


@router.get(
    "/wallets/{wallet_id}/transactions",
    openapi_extra=for_services(Scope.wallets_read),
    response_model=TransactionPage,
    responses=errors(
        {
            403: "The caller may not read this wallet (`forbidden`)",
            404: "No such wallet (`not_found`)",
            422: "`limit` out of 1..200 (`validation_error`), or a `cursor` this API did not "
            "give out (`invalid_cursor`)",
        }
    ),
    summary="Statement lines, newest first (keyset cursor)",
)
async def list_transactions(
    wallet_id: uuid.UUID,
    engine: Engine,
    caller: Caller,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> TransactionPage:
    """Every movement of the wallet (purchases, bonuses, debits, holds, captures, releases,
    refunds, expiries) with the balance before and after it. Pages of `limit` lines; pass
    `next_cursor` back as `cursor` for the next page, until it is null."""
    try:
        before = decode_cursor(cursor) if cursor else None
    except ValueError as exc:
        raise InvalidCursor(str(exc)) from exc

    async def work(conn: AsyncConnection) -> TransactionPage:
        wallet = await ws.get_wallet(conn, wallet_id)
        await auth.authorize_wallet_read(conn, caller, wallet)
        lines = await ws.list_statement(conn, wallet_id, before_seq=before, limit=limit + 1)
        more = len(lines) > limit
        lines = lines[:limit]
        return TransactionPage(
            data=[TransactionOut.of(t) for t in lines],
            next_cursor=encode_cursor(lines[-1].seq) if more else None,
        )

    return await in_transaction(engine, work)


@router.post(
    "/wallets/{wallet_id}/debits",
    openapi_extra=for_services(Scope.wallets_debit),
    status_code=201,
    response_model=OperationOut,
    responses=errors(
        {
            **_KEYED,
            403: "Not the wallet's owner, or a service without wallets:debit (`forbidden`)",
            404: "No such wallet (`not_found`)",
            409: "Fewer available credits than asked (`insufficient_credits`), or the same "
            "Idempotency-Key still running (`idempotency_key_in_use`)",
        }
    ),
    summary="Spend credits (FIFO over lots)",
)
async def debit(
    wallet_id: uuid.UUID,
    body: Annotated[
        DebitRequest, Body(openapi_examples=_example("Spend on a feature", _DEBIT_EXAMPLE))
    ],
    request: Request,
    settings: Config,
    caller: Caller,
    key: IdemKey,
) -> Response:
    """Takes `credits` from the available balance at once, oldest lot first (expiring
    credits go before purchased ones), and answers the new balance and the statement line.
    The same Idempotency-Key and body answer the first result again, without a second
    debit; the key with another body is refused (422)."""
    _check_limit(settings, body.credits)
    keyed = KeyedRequest.of(request, caller.sub, key, body)
    debit = Debit(
        wallet_id=wallet_id,
        credits=body.credits,
        idempotency_key=keyed.operation_key,
        reason=body.reason,
        source_id=body.source_id,
        metadata={**(body.metadata or {}), "actor": caller.sub},
    )
    # Through the wallet's batcher: alone when the wallet is idle, with the requests that
    # queued behind a transaction in flight when it is busy (http_debits.py).
    call = DebitCall(keyed, caller, debit, contextvars.copy_context())
    reply = await batcher_of(request.app.state).submit(wallet_id, call)
    return respond_content(reply.status, reply.content, replayed=reply.replayed)


@router.post(
    "/wallets/{wallet_id}/grants",
    status_code=201,
    response_model=OperationOut,
    responses=errors(
        {
            **_KEYED,
            403: "Only finance_admin grants credits (`forbidden`)",
            404: "No such wallet (`not_found`)",
        }
    ),
    summary="Grant promotional credits (finance_admin)",
)
async def grant(
    wallet_id: uuid.UUID,
    body: Annotated[
        GrantRequest, Body(openapi_examples=_example("A goodwill grant", _GRANT_EXAMPLE))
    ],
    request: Request,
    engine: Engine,
    settings: Config,
    caller: Caller,
    key: IdemKey,
) -> JSONResponse:
    """Adds promotional credits (no money behind them: they are never refunded) as a lot
    of their own, expiring at `expires_at` when given. Written to the audit log with the
    balance before and after."""
    auth.authorize_grant(caller)
    _check_limit(settings, body.credits)

    async def work(conn: AsyncConnection, op_key: str) -> Answer:
        result = await ws.grant_credits(
            conn,
            wallet_id=wallet_id,
            credits=body.credits,
            source=LotSource.promotional,
            idempotency_key=op_key,
            reason=body.reason,
            expires_at=body.expires_at,
            metadata={**(body.metadata or {}), "actor": caller.sub},
        )
        await audit.record(
            conn,
            caller,
            action="wallet.grant.promotional",
            target_type="wallet",
            target_id=str(wallet_id),
            details={
                "credits": body.credits,
                "reason": body.reason,
                "transaction_id": str(result.line.id),
            },
            request_id=sane_header(request.headers.get("x-request-id")),
            before={"available_credits": result.line.balance_before},
            after={"available_credits": result.line.balance_after},
        )
        return _op_answer(conn, 201, result, "grant")

    return await _run_keyed(engine, request, caller, key, body, work)


@router.post(
    "/wallets/{wallet_id}/holds",
    openapi_extra=for_services(Scope.wallets_debit),
    status_code=201,
    response_model=OperationOut,
    responses=errors(
        {
            **_KEYED,
            403: "Not the wallet's owner, or a service without wallets:debit (`forbidden`)",
            404: "No such wallet (`not_found`)",
            409: "Fewer available credits than asked (`insufficient_credits`), or the same "
            "Idempotency-Key still running (`idempotency_key_in_use`)",
            422: "Body invalid (`validation_error`), too many credits or `ttl_seconds` over "
            "the maximum (`invalid_amount`), or the key reused (`idempotency_key_reused`)",
        }
    ),
    summary="Lock credits until captured, released or expired",
)
async def create_hold(
    wallet_id: uuid.UUID,
    body: Annotated[
        HoldRequest, Body(openapi_examples=_example("Hold for a long job", _HOLD_EXAMPLE))
    ],
    request: Request,
    engine: Engine,
    settings: Config,
    caller: Caller,
    key: IdemKey,
) -> JSONResponse:
    """Moves `credits` from available to locked for work whose cost is known only at its
    end: capture what was used (`/holds/{hold_id}/capture`), release the rest; a hold left
    open is released when `ttl_seconds` (default from the server's settings) runs out."""
    _check_limit(settings, body.credits)
    ttl = body.ttl_seconds or settings.hold_default_ttl_s
    if ttl > settings.hold_max_ttl_s:
        raise InvalidAmount(f"ttl_seconds is at most {settings.hold_max_ttl_s}")

    async def work(conn: AsyncConnection, op_key: str) -> Answer:
        wallet = await ws.get_wallet(conn, wallet_id)
        await auth.authorize_wallet_spend(conn, caller, wallet)
        result = await ws.lock_credits(
            conn,
            wallet_id=wallet_id,
            credits=body.credits,
            idempotency_key=op_key,
            reason=body.reason,
            ttl_s=ttl,
            created_by=caller.sub,
            metadata={**(body.metadata or {}), "actor": caller.sub},
        )
        return _op_answer(conn, 201, result, "hold")

    return await _run_keyed(engine, request, caller, key, body, work)


async def _authorize_hold(conn: AsyncConnection, caller: Caller, hold_id: uuid.UUID) -> None:
    hold = await ws.get_hold(conn, hold_id)
    wallet = await ws.get_wallet(conn, hold.wallet_id)
    await auth.authorize_hold_settle(conn, caller, hold, wallet)


@router.get(
    "/holds/{hold_id}",
    openapi_extra=for_services(Scope.wallets_read),
    response_model=HoldOut,
    responses=errors(
        {
            403: "The caller may not read the hold's wallet (`forbidden`)",
            404: "No such hold (`not_found`)",
        }
    ),
    summary="One hold: what it locked, captured and released",
)
async def get_hold(hold_id: uuid.UUID, engine: Engine, caller: Caller) -> HoldOut:
    """A hold's figures and `status` (active until captured, released or expired), for
    whoever may read its wallet."""

    async def work(conn: AsyncConnection) -> HoldOut:
        hold = await ws.get_hold(conn, hold_id)
        await auth.authorize_wallet_read(conn, caller, await ws.get_wallet(conn, hold.wallet_id))
        return HoldOut.of(hold)

    return await in_transaction(engine, work)


@router.post(
    "/holds/{hold_id}/capture",
    openapi_extra=for_services(Scope.wallets_debit),
    response_model=OperationOut,
    responses=errors(
        {
            **_KEYED,
            403: "Not the hold's wallet owner or creator, or a service without "
            "wallets:debit (`forbidden`)",
            404: "No such hold (`not_found`)",
            409: "The hold is no longer active (`hold_not_active`) or has run out "
            "(`hold_expired`), or the same "
            "Idempotency-Key still running (`idempotency_key_in_use`)",
            422: "Body invalid (`validation_error`), more than the hold locked "
            "(`invalid_amount`), or the key reused (`idempotency_key_reused`)",
        }
    ),
    summary="Consume all or part of a hold; the rest is released",
)
async def capture(
    hold_id: uuid.UUID,
    request: Request,
    engine: Engine,
    settings: Config,
    caller: Caller,
    key: IdemKey,
    body: Annotated[
        CaptureRequest | None,
        Body(openapi_examples=_example("Capture part", {"credits": 60, "reason": "rendered"})),
    ] = None,
) -> JSONResponse:
    """Spends `credits` of the hold (all of it when omitted) and returns the rest to the
    available balance in the same step; the hold is then closed."""
    body = body or CaptureRequest()
    _check_limit(settings, body.credits)

    async def work(conn: AsyncConnection, op_key: str) -> Answer:
        await _authorize_hold(conn, caller, hold_id)
        result = await ws.capture_hold(
            conn,
            hold_id=hold_id,
            idempotency_key=op_key,
            credits=body.credits,
            reason=body.reason,
            metadata=body.metadata,
        )
        return _op_answer(conn, 200, result, "capture")

    return await _run_keyed(engine, request, caller, key, body, work)


@router.post(
    "/holds/{hold_id}/release",
    openapi_extra=for_services(Scope.wallets_debit),
    response_model=OperationOut,
    responses=errors(
        {
            **_KEYED,
            403: "Not the hold's wallet owner or creator, or a service without "
            "wallets:debit (`forbidden`)",
            404: "No such hold (`not_found`)",
            409: "The hold is no longer active (`hold_not_active`) or has run out "
            "(`hold_expired`), or the same "
            "Idempotency-Key still running (`idempotency_key_in_use`)",
            422: "Body invalid (`validation_error`) or the key reused (`idempotency_key_reused`)",
        }
    ),
    summary="Return a hold's credits to available",
)
async def release(
    hold_id: uuid.UUID,
    request: Request,
    engine: Engine,
    caller: Caller,
    key: IdemKey,
    body: Annotated[
        ReleaseRequest | None,
        Body(openapi_examples=_example("Job cancelled", {"reason": "cancelled by member"})),
    ] = None,
) -> JSONResponse:
    """Gives every credit of an active hold back to the available balance (the work was
    cancelled); nothing is spent."""
    body = body or ReleaseRequest()

    async def work(conn: AsyncConnection, op_key: str) -> Answer:
        await _authorize_hold(conn, caller, hold_id)
        result = await ws.release_credits(
            conn, hold_id=hold_id, idempotency_key=op_key, reason=body.reason
        )
        return _op_answer(conn, 200, result, "release")

    return await _run_keyed(engine, request, caller, key, body, work)
