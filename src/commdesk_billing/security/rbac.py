"""Who may do what (DESIGN §7). Each route names its rule here, and the API test suite
walks every route against every role."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.db.sql import sql
from commdesk_billing.errors import Forbidden
from commdesk_billing.modules.wallet.model import Hold, Wallet
from commdesk_billing.security.jwt import Principal, Role, Scope

# Staff who may read any wallet.
WALLET_READERS = frozenset({Role.finance_admin, Role.support, Role.auditor})
# Roles that are people and so can own a wallet.
WALLET_OWNERS = frozenset(set(Role) - {Role.service})


async def owns(conn: AsyncConnection, principal: Principal, wallet: Wallet) -> bool:
    if principal.role not in WALLET_OWNERS or wallet.owner_type != "user":
        return False
    user_id = (
        await conn.execute(
            sql("SELECT id FROM users WHERE external_id = :sub"), {"sub": principal.sub}
        )
    ).scalar_one_or_none()
    return user_id is not None and user_id == wallet.owner_id


async def authorize_wallet_read(
    conn: AsyncConnection, principal: Principal, wallet: Wallet
) -> None:
    if principal.role in WALLET_READERS:
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
    if principal.role not in WALLET_OWNERS:
        raise Forbidden("services have no wallet of their own")
