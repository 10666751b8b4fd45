"""Who may do what with a payment (DESIGN §7); role sets come from `security.roles`."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.errors import Forbidden
from commdesk_billing.modules.payments.model import Payment
from commdesk_billing.modules.users import service as users
from commdesk_billing.security.jwt import Principal
from commdesk_billing.security.roles import MONEY_OPERATORS, PEOPLE, STAFF_READERS


async def is_buyer(conn: AsyncConnection, principal: Principal, payment: Payment) -> bool:
    if principal.role not in PEOPLE:
        return False
    return await users.is_subject(conn, payment.user_id, principal.sub)


def authorize_buying(principal: Principal) -> None:
    # A service has no wallet of its own; staff buy credits as the people they are.
    if principal.role not in PEOPLE:
        raise Forbidden("services cannot buy credits")


async def authorize_read(conn: AsyncConnection, principal: Principal, payment: Payment) -> None:
    if principal.role in STAFF_READERS or await is_buyer(conn, principal, payment):
        return
    raise Forbidden("not allowed to read this payment")


async def authorize_retry(conn: AsyncConnection, principal: Principal, payment: Payment) -> None:
    if not await is_buyer(conn, principal, payment):
        raise Forbidden("only the buyer may retry this payment")


def authorize_sync(principal: Principal) -> None:
    if principal.role not in MONEY_OPERATORS:
        raise Forbidden("only finance_admin or support may force a sync")


async def authorize_cancel(conn: AsyncConnection, principal: Principal, payment: Payment) -> None:
    if not await is_buyer(conn, principal, payment):
        raise Forbidden("only the buyer may cancel this payment")
