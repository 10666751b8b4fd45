"""The caller's billing profile: `GET` and `PUT /v1/billing-profile`.

A person's own, and only theirs (services have none). PUT replaces the whole profile and is
idempotent by nature (the same body twice is the same profile), so it takes no
Idempotency-Key. Orders opened after a change use the new profile; invoices already issued
keep the buyer they were issued to.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.db.engine import in_transaction
from commdesk_billing.deps import Caller, Engine
from commdesk_billing.errors import Forbidden, NotFound
from commdesk_billing.modules.users import profiles, service
from commdesk_billing.modules.users.schemas import BillingProfileIn, BillingProfileOut
from commdesk_billing.problems import errors
from commdesk_billing.security.jwt import Principal
from commdesk_billing.security.roles import PEOPLE

router = APIRouter(prefix="/v1", tags=["billing profile"])

_SERVICE = "A service token: services have no billing profile (`forbidden`)"
# Sent as it is by tests/contract/test_examples.py: it must be accepted.
_PROFILE_EXAMPLE = {
    "default": {
        "summary": "A member in Maharashtra, no GSTIN (B2C invoices)",
        "value": {
            "legal_name": "Asha Kulkarni",
            "address_line1": "Flat 7, 21 FC Road",
            "city": "Pune",
            "postal_code": "411004",
            "state_code": "27",
        },
    }
}


def _person(caller: Principal) -> None:
    if caller.role not in PEOPLE:
        raise Forbidden("services have no billing profile")


@router.get(
    "/billing-profile",
    response_model=BillingProfileOut,
    responses=errors(
        {
            403: _SERVICE,
            404: "No billing profile set yet (`not_found`): PUT one",
        }
    ),
    summary="The caller's billing profile (the buyer on their tax invoices)",
)
async def get_profile(engine: Engine, caller: Caller) -> BillingProfileOut:
    """The name, address and optional GSTIN printed as the buyer on the caller's tax
    invoices; `registered` says a GSTIN is on file (B2B invoices). A checkout page can
    read it to prefill the form, and offer to set one on 404."""
    _person(caller)

    async def work(conn: AsyncConnection) -> BillingProfileOut:
        user_id = await service.user_id_for(conn, caller.sub)
        found = None if user_id is None else await profiles.get(conn, user_id)
        if found is None:
            raise NotFound("no billing profile yet: PUT /v1/billing-profile sets one")
        return BillingProfileOut.of(found)

    return await in_transaction(engine, work)


@router.put(
    "/billing-profile",
    response_model=BillingProfileOut,
    responses=errors(
        {
            403: _SERVICE,
            413: "Body too large (`payload_too_large`)",
            422: "Body invalid (`validation_error`): a field missing or too long, a PIN code, "
            "state code or GSTIN that is not valid (its check character, or a state other "
            "than the registration's)",
        }
    ),
    summary="Set the caller's billing profile: legal name, address, GST state, GSTIN",
)
async def put_profile(
    body: Annotated[BillingProfileIn, Body(openapi_examples=_PROFILE_EXAMPLE)],
    engine: Engine,
    caller: Caller,
) -> BillingProfileOut:
    """Replaces the whole profile (fields left out are cleared) and answers it. Sending the
    same body again changes nothing, so no Idempotency-Key is needed. Orders opened from
    now on use it for the place of supply and the invoice's buyer; invoices already issued
    keep the buyer they named."""
    _person(caller)

    async def work(conn: AsyncConnection) -> BillingProfileOut:
        user_id = await service.ensure_user(conn, caller.sub, email=caller.email, name=caller.name)
        return BillingProfileOut.of(await profiles.put(conn, user_id, body.model_dump()))

    return await in_transaction(engine, work)
