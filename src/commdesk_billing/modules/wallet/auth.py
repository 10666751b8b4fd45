"""Who may do what with a wallet (DESIGN §7); role sets come from `security.roles`."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.errors import Forbidden
from commdesk_billing.modules.users import service as users
from commdesk_billing.modules.wallet.model import Hold, Wallet
from commdesk_billing.security.jwt import Principal, Role, Scope
from commdesk_billing.security.roles import PEOPLE, STAFF_READERS


async def owns(conn: AsyncConnection, principal: Principal, wallet: Wallet) -> bool:
    if principal.role not in PEOPLE or wallet.owner_type != "user":
        return False
    user_id = await users.user_id_for(conn, principal.sub)
    return user_id is not None and user_id == wallet.owner_id


async def authorize_wallet_read(
    conn: AsyncConnection, principal: Principal, wallet: Wallet
) -> None:
    if principal.role in STAFF_READERS:
        return
    if principal.role is Role.service and principal.has(Scope.wallets_read):
        return
    if await owns(conn, principal, wallet):
        return
    raise Forbidden("not allowed to read this wallet")


async def authorize_wallet_spend(
    conn: AsyncConnection, principal: Principal, wallet: Wallet
) -> None:
    """Debits and holds: the wallet's owner, or a service with the debit scope."""
    if principal.role is Role.service and principal.has(Scope.wallets_debit):
        return
    if await owns(conn, principal, wallet):
        return
    raise Forbidden("not allowed to spend from this wallet")


async def authorize_hold_settle(
    conn: AsyncConnection, principal: Principal, hold: Hold, wallet: Wallet
) -> None:
    """Capture and release: a debit-scoped service, or whoever placed the hold if they may
    still spend from the wallet. A wallet's owner cannot void a hold a service placed (that
    would let them take the service's goods unpaid)."""
    if principal.role is Role.service and principal.has(Scope.wallets_debit):
        return
    if hold.created_by == principal.sub and await owns(conn, principal, wallet):
        return
    raise Forbidden("only the hold's creator or a debit-scoped service may settle this hold")


def authorize_grant(principal: Principal) -> None:
    if principal.role is not Role.finance_admin:
        raise Forbidden("only finance_admin may grant promotional credits")


def authorize_own_wallet(principal: Principal) -> None:
    if principal.role not in PEOPLE:
        raise Forbidden("services have no wallet of their own")
