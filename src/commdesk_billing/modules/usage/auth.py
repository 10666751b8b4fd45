"""Who may do what with usage (DESIGN §7); role sets from `security.roles`.

Services report usage with `usage:write`; finance manages the price book; a wallet's
usage is read by its owner, staff readers, or a service with `usage:read`.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.errors import Forbidden
from commdesk_billing.modules.wallet import auth as wallet_auth
from commdesk_billing.modules.wallet.model import Wallet
from commdesk_billing.security.jwt import Principal, Role, Scope
from commdesk_billing.security.roles import STAFF_READERS


def authorize_report(principal: Principal) -> None:
    if principal.role is not Role.service or not principal.has(Scope.usage_write):
        raise Forbidden("only a service with the usage:write scope reports usage")


def authorize_price_change(principal: Principal) -> None:
    if principal.role is not Role.finance_admin:
        raise Forbidden("only finance_admin changes the usage price book")


def authorize_price_read(principal: Principal) -> None:
    if principal.role in STAFF_READERS:
        return
    if principal.role is Role.service and (
        principal.has(Scope.usage_read) or principal.has(Scope.usage_write)
    ):
        return
    raise Forbidden("not allowed to read the usage price book")


async def authorize_summary(conn: AsyncConnection, principal: Principal, wallet: Wallet) -> None:
    if principal.role in STAFF_READERS:
        return
    if principal.role is Role.service and principal.has(Scope.usage_read):
        return
    if await wallet_auth.owns(conn, principal, wallet):
        return
    raise Forbidden("not allowed to read this wallet's usage")
