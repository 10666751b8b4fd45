"""Mandate routes: set one up (returns the link where the member authorises it), read it,
list the caller's, and revoke it."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request

from commdesk_billing.deps import Caller, Config, Engine, IdemKey
from commdesk_billing.gateway.subscriptions import SubscriptionsClient
from commdesk_billing.modules.mandates import auth, service
from commdesk_billing.modules.mandates.schemas import MandateList, MandateOut, MandateRequest
from commdesk_billing.problems import documented

router = APIRouter(prefix="/v1", tags=["mandates"])

_PROBLEMS = documented(
    {
        400: "Missing or malformed Idempotency-Key",
        401: "No valid bearer token",
        403: "Caller may not do this",
        404: "No such mandate",
        409: "The mandate has already ended (mandate_not_revocable)",
        422: "Body invalid, maximum above ₹15,000 (mandate_amount_too_high), or the key reused",
        502: "Cashfree refused the mandate",
        503: "Cashfree unavailable (repeat with the same Idempotency-Key)",
    }
)


def _client(request: Request) -> SubscriptionsClient:
    client: SubscriptionsClient = request.app.state.subscriptions
    return client


@router.post(
    "/mandates",
    status_code=201,
    response_model=MandateOut,
    responses=_PROBLEMS,
    summary="Set up a UPI AutoPay / card mandate; answer carries its authorization link",
)
async def create_mandate(
    body: MandateRequest,
    request: Request,
    engine: Engine,
    settings: Config,
    caller: Caller,
    key: IdemKey,
) -> MandateOut:
    m = await service.create(engine, _client(request), settings, caller, body, key)
    return MandateOut.of(m, service.authorization_url(settings, m))


@router.get(
    "/mandates",
    response_model=MandateList,
    responses=_PROBLEMS,
    summary="The caller's own mandates, newest first",
)
async def list_mandates(engine: Engine, settings: Config, caller: Caller) -> MandateList:
    auth.authorize_create(caller)
    rows = await service.list_mine(engine, caller)
    return MandateList(
        data=[MandateOut.of(m, service.authorization_url(settings, m)) for m in rows]
    )


@router.get("/mandates/{mandate_id}", response_model=MandateOut, responses=_PROBLEMS)
async def get_mandate(
    mandate_id: uuid.UUID, request: Request, engine: Engine, settings: Config, caller: Caller
) -> MandateOut:
    m = await service.read(engine, _client(request), settings, caller, mandate_id)
    return MandateOut.of(m, service.authorization_url(settings, m))


@router.post(
    "/mandates/{mandate_id}/revoke",
    response_model=MandateOut,
    responses=_PROBLEMS,
    summary="Revoke the mandate: unusable at once, then cancelled at Cashfree",
)
async def revoke_mandate(
    mandate_id: uuid.UUID, request: Request, engine: Engine, settings: Config, caller: Caller
) -> MandateOut:
    m = await service.revoke(engine, _client(request), caller, mandate_id)
    return MandateOut.of(m, service.authorization_url(settings, m))
