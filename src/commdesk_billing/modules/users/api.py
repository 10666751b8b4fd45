"""The caller's billing profile: `GET` and `PUT /v1/billing-profile`.

A person's own, and only theirs (services have none). PUT replaces the whole profile and is
idempotent by nature (the same body twice is the same profile), so it takes no
Idempotency-Key. Orders opened after a change use the new profile; invoices already issued
keep the buyer they were issued to.
"""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.db.engine import in_transaction
from commdesk_billing.deps import Caller, Engine
from commdesk_billing.errors import Forbidden, NotFound
from commdesk_billing.modules.users import profiles, service
from commdesk_billing.modules.users.schemas import BillingProfileIn, BillingProfileOut
from commdesk_billing.problems import documented
from commdesk_billing.security.jwt import Principal
from commdesk_billing.security.roles import PEOPLE

router = APIRouter(prefix="/v1", tags=["billing profile"])

_PROBLEMS = documented(
    {
        401: "No valid bearer token",
        403: "A service has no billing profile",
        404: "No billing profile yet (`not_found`)",
        422: "Body invalid: a field missing or too long, a PIN code, state code or GSTIN "
        "that is not valid (its check character, or a state other than the registration's)",
    }
)


def _person(caller: Principal) -> None:
    if caller.role not in PEOPLE:
        raise Forbidden("services have no billing profile")


@router.get(
    "/billing-profile",
    response_model=BillingProfileOut,
    responses=_PROBLEMS,
    summary="The caller's billing profile (the buyer on their tax invoices)",
)
async def get_profile(engine: Engine, caller: Caller) -> BillingProfileOut:
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
    responses=_PROBLEMS,
    summary="Set the caller's billing profile: legal name, address, GST state, GSTIN",
)
async def put_profile(body: BillingProfileIn, engine: Engine, caller: Caller) -> BillingProfileOut:
    _person(caller)

    async def work(conn: AsyncConnection) -> BillingProfileOut:
        user_id = await service.ensure_user(conn, caller.sub, email=caller.email, name=caller.name)
        return BillingProfileOut.of(await profiles.put(conn, user_id, body.model_dump()))

    return await in_transaction(engine, work)
