"""Who may do what with payees (DESIGN §7); role sets from `security.roles`.

A community payee is managed by the community's owners (`communities.auth.owns`: its
MongoDB `owner_ids`, or a community_owner token naming it) and by finance_admin; a partner
payee by finance_admin alone. Finance, the auditor and support read any payee; owners read
their community's. Suspending and reactivating is finance_admin's.
"""

from __future__ import annotations

from commdesk_billing.errors import Forbidden
from commdesk_billing.modules.communities.auth import owns
from commdesk_billing.modules.communities.directory import Community
from commdesk_billing.security.jwt import Principal, Role
from commdesk_billing.security.roles import PEOPLE, STAFF_READERS


def staff_reader(principal: Principal) -> bool:
    return principal.role in STAFF_READERS


def may_be_owner(principal: Principal) -> bool:
    """Could this caller own a community (so the directory is worth asking)?"""
    return principal.role in PEOPLE and principal.role not in STAFF_READERS


def authorize_list(principal: Principal) -> None:
    if not staff_reader(principal):
        raise Forbidden("only finance_admin, auditor and support list payees")


def authorize_read(principal: Principal, community: Community | None) -> None:
    """`community`: the payee's community, when it is one and the caller might own it."""
    if staff_reader(principal) or (community is not None and owns(principal, community)):
        return
    raise Forbidden("only the payee's owners, finance_admin, auditor and support see a payee")


def authorize_manage(principal: Principal, community: Community | None) -> None:
    """Create a payee or set its payout account."""
    if principal.role is Role.finance_admin:
        return
    if community is not None and owns(principal, community):
        return
    raise Forbidden("only the community's owners or finance_admin manage its payee")


def authorize_create_community(principal: Principal) -> None:
    """Before the community is looked up: only its owners (people) or finance_admin."""
    if principal.role is not Role.finance_admin and not may_be_owner(principal):
        raise Forbidden("only the community's owners or finance_admin make it a payee")


def authorize_create_partner(principal: Principal) -> None:
    if principal.role is not Role.finance_admin:
        raise Forbidden("only finance_admin makes a partner a payee")


def authorize_status(principal: Principal) -> None:
    if principal.role is not Role.finance_admin:
        raise Forbidden("only finance_admin suspends or reactivates a payee")
