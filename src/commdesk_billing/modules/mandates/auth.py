"""Who may do what with a mandate (DESIGN §7); role sets come from `security.roles`."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.errors import Forbidden
from commdesk_billing.modules.mandates.model import Mandate
from commdesk_billing.modules.users import service as users
from commdesk_billing.security.jwt import Principal
from commdesk_billing.security.roles import PEOPLE, STAFF_READERS


async def is_owner(conn: AsyncConnection, principal: Principal, mandate: Mandate) -> bool:
    if principal.role not in PEOPLE:
        return False
    return await users.is_subject(conn, mandate.user_id, principal.sub)


def authorize_create(principal: Principal) -> None:
    # A mandate debits a person's own bank account or card: a service has none.
    if principal.role not in PEOPLE:
        raise Forbidden("services cannot set up mandates")


async def authorize_read(conn: AsyncConnection, principal: Principal, mandate: Mandate) -> None:
    if principal.role in STAFF_READERS or await is_owner(conn, principal, mandate):
        return
    raise Forbidden("not allowed to read this mandate")


async def authorize_revoke(conn: AsyncConnection, principal: Principal, mandate: Mandate) -> None:
    if not await is_owner(conn, principal, mandate):
        raise Forbidden("only the member who set up the mandate may revoke it")
