"""Auto-recharge routes: parse, authorize (in the service), call, shape the answer."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Body, Query
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
from commdesk_billing.problems import errors
from commdesk_billing.security.jwt import Scope
from commdesk_billing.security.service_scopes import for_services

router = APIRouter(prefix="/v1", tags=["auto-recharge"])

_READ = {
    403: "Not the wallet's owner, staff, or a service with wallets:read (`forbidden`)",
}
# Sent as it is by tests/contract/test_examples.py: it must be accepted.
_SETTINGS_EXAMPLE = {
    "default": {
        "summary": "Buy pack_300 whenever fewer than 150 credits are left, twice a day at most",
        "value": {
            "enabled": True,
            "threshold": 150,
            "pack_code": "pack_300",
            "customer_phone": "9876543210",
            "max_recharges_per_day": 2,
        },
    }
}


@router.put(
    "/wallets/{wallet_id}/auto-recharge",
    response_model=AutoRechargeOut,
    responses=errors(
        {
            403: "Only the wallet's owner sets its auto-recharge (`forbidden`)",
            404: "No such wallet (`not_found`)",
            413: "Body too large (`payload_too_large`)",
            422: "Body invalid (`validation_error`), an unknown pack or limits that "
            "contradict each other (`auto_recharge_invalid`), or a mandate that is not the "
            "owner's or not usable (`auto_recharge_mandate_invalid`)",
        }
    ),
    summary="Set the wallet's auto-recharge (the owner; the same body twice changes nothing)",
)
async def put_auto_recharge(
    wallet_id: uuid.UUID,
    body: Annotated[AutoRechargeRequest, Body(openapi_examples=_SETTINGS_EXAMPLE)],
    engine: Engine,
    settings: Config,
    caller: Caller,
) -> AutoRechargeOut:
    """Replaces the wallet's auto-recharge settings: when the available balance falls
    below the trigger level (`threshold`, raised by the recent burn rate), a purchase of
    the pack or amount is started, on the mandate when one is given (charged without the
    member), else as an order the member is asked to pay. The daily and monthly caps and
    `max_consecutive_failures` bound what it may do; `enabled: false` turns it off."""
    return await in_transaction(
        engine, lambda conn: service.configure(conn, settings, caller, wallet_id, body)
    )


@router.get(
    "/wallets/{wallet_id}/auto-recharge",
    openapi_extra=for_services(Scope.wallets_read),
    response_model=AutoRechargeOut,
    responses=errors(
        {**_READ, 404: "No such wallet, or no auto-recharge set up on it (`not_found`)"}
    ),
    summary="The wallet's auto-recharge settings and its effective trigger level",
)
async def get_auto_recharge(
    wallet_id: uuid.UUID, engine: Engine, caller: Caller
) -> AutoRechargeOut:
    """The settings as last PUT, with `trigger_level`, the balance below which a recharge
    starts now (the threshold, raised by `burn_credits_per_hour` so a busy wallet
    recharges before it runs dry)."""
    found = await in_transaction(engine, lambda conn: service.read(conn, caller, wallet_id))
    if found is None:
        raise NotFound("this wallet has no auto-recharge set up")
    return found


@router.get(
    "/wallets/{wallet_id}/auto-recharge/events",
    openapi_extra=for_services(Scope.wallets_read),
    response_model=DecisionPage,
    responses=errors(
        {
            **_READ,
            404: "No such wallet (`not_found`)",
            422: "`limit` out of 1..200 (`validation_error`), or a `cursor` this API did not "
            "give out (`invalid_cursor`)",
        }
    ),
    summary="Every automatic decision on the wallet, newest first (keyset cursor)",
)
async def list_decisions(
    wallet_id: uuid.UUID,
    engine: Engine,
    caller: Caller,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> DecisionPage:
    """Why each recharge started or did not (a cap reached, failures in a row, a mandate
    not usable) and what came of it, so a settings page can explain what happened. Pages
    of `limit`, continued with `next_cursor`."""
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
