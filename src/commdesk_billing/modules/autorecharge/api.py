"""Auto-recharge routes: parse, authorize (in the service), call, shape the answer."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.db.engine import in_transaction
from commdesk_billing.deps import Caller, Config, Engine
from commdesk_billing.errors import InvalidCursor, NotFound
from commdesk_billing.modules.autorecharge import service
from commdesk_billing.modules.autorecharge.schemas import (
    AutoRechargeOut,
    AutoRechargeRequest,
    DecisionOut,
    DecisionPage,
    decode_cursor,
    encode_cursor,
)
from commdesk_billing.problems import documented
from commdesk_billing.security.jwt import Scope
from commdesk_billing.security.service_scopes import for_services

router = APIRouter(prefix="/v1", tags=["auto-recharge"])

_PROBLEMS = documented(
    {
        401: "No valid bearer token",
        403: "Caller may not do this",
        404: "No such wallet, or no auto-recharge set up on it",
        413: "Body too large",
        422: "Body invalid, an unknown pack, or a mandate that is not the owner's or not usable",
    }
)


@router.put(
    "/wallets/{wallet_id}/auto-recharge",
    response_model=AutoRechargeOut,
    responses=_PROBLEMS,
    summary="Set the wallet's auto-recharge (the owner; the same body twice changes nothing)",
)
async def put_auto_recharge(
    wallet_id: uuid.UUID,
    body: AutoRechargeRequest,
    engine: Engine,
    settings: Config,
    caller: Caller,
) -> AutoRechargeOut:
    return await in_transaction(
        engine, lambda conn: service.configure(conn, settings, caller, wallet_id, body)
    )


@router.get(
    "/wallets/{wallet_id}/auto-recharge",
    openapi_extra=for_services(Scope.wallets_read),
    response_model=AutoRechargeOut,
    responses=_PROBLEMS,
    summary="The wallet's auto-recharge settings and its effective trigger level",
)
async def get_auto_recharge(
    wallet_id: uuid.UUID, engine: Engine, caller: Caller
) -> AutoRechargeOut:
    found = await in_transaction(engine, lambda conn: service.read(conn, caller, wallet_id))
    if found is None:
        raise NotFound("this wallet has no auto-recharge set up")
    return found


@router.get(
    "/wallets/{wallet_id}/auto-recharge/events",
    openapi_extra=for_services(Scope.wallets_read),
    response_model=DecisionPage,
    responses=_PROBLEMS,
    summary="Every automatic decision on the wallet, newest first (keyset cursor)",
)
async def list_decisions(
    wallet_id: uuid.UUID,
    engine: Engine,
    caller: Caller,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> DecisionPage:
    try:
        before = decode_cursor(cursor) if cursor else None
    except ValueError as exc:
        raise InvalidCursor(str(exc)) from exc

    async def work(conn: AsyncConnection) -> DecisionPage:
        rows = await service.decisions(conn, caller, wallet_id, before_id=before, limit=limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        return DecisionPage(
            data=[DecisionOut.of(d) for d in rows],
            next_cursor=encode_cursor(rows[-1].id) if more else None,
        )

    return await in_transaction(engine, work)
