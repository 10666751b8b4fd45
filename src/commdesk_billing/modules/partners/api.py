"""Partner routes: create a partner, change its share, attribute a user to it, its earnings.

The POSTs take an Idempotency-Key (a retried create or attribution answers as the first
did); PUT sets the terms whole, a new version each time, like a community's fee plan.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.db.engine import in_transaction
from commdesk_billing.deps import Caller, Engine, IdemKey
from commdesk_billing.idempotency.keys import Answer, KeyedRequest, respond, run_keyed
from commdesk_billing.modules.audit import service as audit
from commdesk_billing.modules.partners import auth, service
from commdesk_billing.modules.partners.schemas import (
    AttributionOut,
    AttributionRequest,
    EarningsOut,
    PartnerChange,
    PartnerCreate,
    PartnerIdPattern,
    PartnerOut,
)
from commdesk_billing.problems import documented
from commdesk_billing.security.jwt import Scope
from commdesk_billing.security.service_scopes import for_services
from commdesk_billing.security.text import sane_header

router = APIRouter(prefix="/v1", tags=["partners"])

PartnerId = Annotated[str, Path(pattern=PartnerIdPattern, description="The partner's id")]

_PROBLEMS = documented(
    {
        400: "Missing or malformed Idempotency-Key",
        401: "No valid bearer token",
        403: "Caller may not do this",
        404: "No such partner (`partner_not_found`)",
        409: "Partner exists (`partner_exists`), is inactive (`partner_inactive`), the user "
        "is attributed for part of the window already (`attribution_overlaps`), or the same "
        "key in flight",
        413: "Body too large",
        422: "Body or partner id invalid, or the key reused with another body",
    }
)


def _keyed(request: Request, sub: str, key: str, body: dict[str, object]) -> KeyedRequest:
    return KeyedRequest(scope=sub, key=key, method=request.method, path=request.url.path, body=body)


@router.post(
    "/partners",
    status_code=201,
    response_model=PartnerOut,
    responses=_PROBLEMS,
    summary="Create a partner with its revenue share (finance_admin)",
)
async def create_partner(
    body: PartnerCreate, request: Request, engine: Engine, caller: Caller, key: IdemKey
) -> JSONResponse:
    auth.authorize_change(caller)

    async def work(conn: AsyncConnection, _op_key: str) -> Answer:
        partner = await service.create_partner(
            conn,
            partner_id=body.id,
            name=body.name,
            share_bps=body.share_bps,
            reason=body.reason,
            by=caller.sub,
        )
        await audit.record(
            conn,
            caller,
            action="partner.created",
            target_type="partner",
            target_id=partner.id,
            details={"share_bps": partner.share_bps, "reason": body.reason},
            request_id=sane_header(request.headers.get("x-request-id")),
        )
        return Answer(201, PartnerOut.of(partner).model_dump(mode="json"))

    body_json = body.model_dump(mode="json")
    return respond(await run_keyed(engine, _keyed(request, caller.sub, key, body_json), work))


@router.put(
    "/partners/{partner_id}",
    response_model=PartnerOut,
    responses=_PROBLEMS,
    summary="Change a partner's name, share or status (finance_admin): a new version",
)
async def change_partner(
    partner_id: PartnerId, body: PartnerChange, request: Request, engine: Engine, caller: Caller
) -> PartnerOut:
    auth.authorize_change(caller)

    async def write(conn: AsyncConnection) -> PartnerOut:
        partner = await service.change_partner(
            conn,
            partner_id=partner_id,
            name=body.name,
            share_bps=body.share_bps,
            status=body.status,
            reason=body.reason,
            by=caller.sub,
        )
        await audit.record(
            conn,
            caller,
            action="partner.terms.changed",
            target_type="partner",
            target_id=partner_id,
            details={
                "share_bps": partner.share_bps,
                "status": partner.status.value,
                "version": partner.version,
                "reason": body.reason,
            },
            request_id=sane_header(request.headers.get("x-request-id")),
        )
        return PartnerOut.of(partner)

    return await in_transaction(engine, write)


@router.post(
    "/partners/{partner_id}/attributions",
    openapi_extra=for_services(Scope.partners_attribute),
    status_code=201,
    response_model=AttributionOut,
    responses=_PROBLEMS,
    summary="Attribute a user's purchases to a partner for a window (service, partners:attribute)",
)
async def attribute(
    partner_id: PartnerId,
    body: AttributionRequest,
    request: Request,
    engine: Engine,
    caller: Caller,
    key: IdemKey,
) -> JSONResponse:
    auth.authorize_attribution(caller)

    async def work(conn: AsyncConnection, _op_key: str) -> Answer:
        attribution = await service.attribute(
            conn,
            partner_id=partner_id,
            user_external_id=body.user_id,
            valid_from=body.valid_from,
            valid_until=body.valid_until,
            by=caller.sub,
        )
        return Answer(201, AttributionOut.of(attribution).model_dump(mode="json"))

    body_json = body.model_dump(mode="json")
    return respond(await run_keyed(engine, _keyed(request, caller.sub, key, body_json), work))


@router.get(
    "/partners/{partner_id}/earnings",
    response_model=EarningsOut,
    responses=_PROBLEMS,
    summary="What a partner earned: its shares, what refunds took back, what we owe it",
)
async def earnings(
    partner_id: PartnerId,
    engine: Engine,
    caller: Caller,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> EarningsOut:
    auth.authorize_earnings_read(caller)

    async def read(conn: AsyncConnection) -> EarningsOut:
        return EarningsOut.of(*await service.earnings(conn, partner_id, limit=limit))

    return await in_transaction(engine, read)
