"""Who may do what with a wallet's auto-recharge: its owner sets it; the owner and the
staff (and services) who may read the wallet read it."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.errors import Forbidden
from commdesk_billing.modules.users import service as users
from commdesk_billing.modules.wallet.model import Wallet
from commdesk_billing.security.jwt import Principal, Role, Scope
from commdesk_billing.security.roles import PEOPLE, STAFF_READERS


async def _owns(conn: AsyncConnection, principal: Principal, wallet: Wallet) -> bool:
    if principal.role not in PEOPLE or wallet.owner_type != "user":
        return False
    user_id = await users.user_id_for(conn, principal.sub)
    return user_id is not None and user_id == wallet.owner_id


async def authorize_configure(conn: AsyncConnection, principal: Principal, wallet: Wallet) -> None:
    if not await _owns(conn, principal, wallet):
        raise Forbidden("only the wallet's owner may set its auto-recharge")


async def authorize_read(conn: AsyncConnection, principal: Principal, wallet: Wallet) -> None:
    if principal.role in STAFF_READERS:
        return
    if principal.role is Role.service and principal.has(Scope.wallets_read):
        return
    if await _owns(conn, principal, wallet):
        return
    raise Forbidden("not allowed to read this wallet")
