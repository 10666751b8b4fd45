"""Partner routes: create a partner, change its share, attribute a user to it, its earnings.

The POSTs take an Idempotency-Key (a retried create or attribution answers as the first
did); PUT sets the terms whole, a new version each time, like a community's fee plan.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Path, Query, Request
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
from commdesk_billing.problems import errors
from commdesk_billing.security.jwt import Scope
from commdesk_billing.security.service_scopes import for_services
from commdesk_billing.security.text import sane_header

router = APIRouter(prefix="/v1", tags=["partners"])

PartnerId = Annotated[str, Path(pattern=PartnerIdPattern, description="The partner's id")]

# Each route names its own errors (problems.errors); 401, 429 and 503 `database_unavailable`
# are added for all.
_KEY_MISSING = (
    "Idempotency-Key missing (`idempotency_key_required`) or malformed (`idempotency_key_invalid`)"
)

# Request body examples: sent as they are by tests/contract/test_examples.py, so each must be
# accepted (the payees' example makes this partner a payee).
_CREATE_EXAMPLES = {
    "default": {
        "summary": "A referral partner earning 10% of taxable value",
        "value": {
            "id": "acme-referrals",
            "name": "Acme Referrals",
            "share_bps": 1000,
            "reason": "referral agreement signed 2026-12-01",
        },
    }
}
_CHANGE_EXAMPLES = {
    "lower_share": {
        "summary": "Lower the share from the next purchase on",
        "value": {
            "name": "Acme Referrals",
            "share_bps": 750,
            "status": "active",
            "reason": "agreement amended 2027-01-01",
        },
    },
    "deactivate": {
        "summary": "Stop the partner earning",
        "value": {
            "name": "Acme Referrals",
            "share_bps": 750,
            "status": "inactive",
            "reason": "agreement ended",
        },
    },
}
_ATTRIBUTION_EXAMPLES = {
    "default": {
        "summary": "A user signed up through the partner, attributed for a year",
        "value": {
            "user_id": "usr_7f3a9c21",
            "valid_from": "2026-12-07T00:00:00+05:30",
            "valid_until": "2027-12-07T00:00:00+05:30",
        },
    },
    "open_ended": {
        "summary": "Attributed with no end",
        "value": {"user_id": "usr_2b8e4d10", "valid_from": "2026-12-07T00:00:00Z"},
    },
}


@router.post(
    "/partners",
    status_code=201,
    response_model=PartnerOut,
    responses=errors(
        {
            400: _KEY_MISSING,
            403: "Only finance_admin creates a partner (`forbidden`)",
            409: "A partner has this id already (`partner_exists`: change it with PUT), or the "
            "same Idempotency-Key still running (`idempotency_key_in_use`)",
            413: "Body too large (`payload_too_large`)",
            422: "Body invalid: an id outside 1-64 of `A-Z a-z 0-9 - _`, `share_bps` outside "
            "0..5000 (`validation_error`); or the key reused with another body "
            "(`idempotency_key_reused`)",
        }
    ),
    summary="Create a partner with its revenue share (finance_admin)",
)
async def create_partner(
    body: Annotated[PartnerCreate, Body(openapi_examples=_CREATE_EXAMPLES)],
    request: Request,
    engine: Engine,
    caller: Caller,
    key: IdemKey,
) -> JSONResponse:
    """Creates a revenue-share partner under an id chosen now and kept for good: from the
    purchases of the users attributed to it, it earns `share_bps` of the taxable value
    (basis points, at most 5000). The answer (201) is the partner at `version` 1, `status`
    `active`; attribute users to it next (`POST /v1/partners/{partner_id}/attributions`).
    Audited."""
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

    return respond(await run_keyed(engine, KeyedRequest.of(request, caller.sub, key, body), work))


@router.put(
    "/partners/{partner_id}",
    response_model=PartnerOut,
    responses=errors(
        {
            403: "Only finance_admin changes a partner's terms (`forbidden`)",
            404: "No partner has this id (`partner_not_found`)",
            413: "Body too large (`payload_too_large`)",
            422: "Body or partner id invalid, e.g. no `reason` or `share_bps` over 5000 "
            "(`validation_error`)",
        }
    ),
    summary="Change a partner's name, share or status (finance_admin): a new version",
)
async def change_partner(
    partner_id: PartnerId,
    body: Annotated[PartnerChange, Body(openapi_examples=_CHANGE_EXAMPLES)],
    request: Request,
    engine: Engine,
    caller: Caller,
) -> PartnerOut:
    """Sets the partner's terms whole (name, share, status and why) as its next `version`.
    Shares already posted keep the rate and version they used; purchases credited from now
    on use the new terms, and an `inactive` partner earns nothing on them and takes no new
    attributions. Audited; sending the same terms again still makes a version."""
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
    responses=errors(
        {
            400: _KEY_MISSING,
            403: "Not a service token with the `partners:attribute` scope (`forbidden`)",
            404: "No partner has this id (`partner_not_found`)",
            409: "The partner is inactive (`partner_inactive`), the user has an attribution "
            "(to any partner) in force at some instant of the window "
            "(`attribution_overlaps`), or the same Idempotency-Key still running "
            "(`idempotency_key_in_use`)",
            413: "Body too large (`payload_too_large`)",
            422: "Body invalid: a timestamp without an offset or outside [2000, 2100), or "
            "`valid_until` not after `valid_from` (`validation_error`); or the key reused "
            "with another body (`idempotency_key_reused`)",
        }
    ),
    summary="Attribute a user's purchases to a partner for a window (service, partners:attribute)",
)
async def attribute(
    partner_id: PartnerId,
    body: Annotated[AttributionRequest, Body(openapi_examples=_ATTRIBUTION_EXAMPLES)],
    request: Request,
    engine: Engine,
    caller: Caller,
    key: IdemKey,
) -> JSONResponse:
    """Says that the CommDesk user `user_id` came through this partner: the user's
    purchases credited from `valid_from` until `valid_until` (excluded; null for no end)
    earn the partner its share. A user is attributed to at most one partner at any
    instant. The answer (201) is the attribution; the same Idempotency-Key answers it
    again."""
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

    return respond(await run_keyed(engine, KeyedRequest.of(request, caller.sub, key, body), work))


@router.get(
    "/partners/{partner_id}/earnings",
    response_model=EarningsOut,
    responses=errors(
        {
            403: "Only finance_admin and auditor read a partner's earnings (`forbidden`)",
            404: "No partner has this id (`partner_not_found`)",
            422: "`limit` out of 1..200 or a malformed partner id (`validation_error`)",
        }
    ),
    summary="What a partner earned: its shares, what refunds took back, what we owe it "
    "(finance_admin, auditor)",
)
async def earnings(
    partner_id: PartnerId,
    engine: Engine,
    caller: Caller,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> EarningsOut:
    """The partner's account in paise: `earned_paise` (every share posted), `reversed_paise`
    (taken back by refunds of those purchases) and `payable_paise`, what CommDesk owes it
    before payouts, with the counts. `shares` and `reversals` are the latest `limit` of
    each, newest first."""
    auth.authorize_earnings_read(caller)

    async def read(conn: AsyncConnection) -> EarningsOut:
        return EarningsOut.of(*await service.earnings(conn, partner_id, limit=limit))

    return await in_transaction(engine, read)
