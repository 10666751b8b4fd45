"""Who may do what in a community's economy (DESIGN §7); role sets from `security.roles`.

A community's owners are the `owner_ids` of its MongoDB record (CommDesk's users, matched
on the token's `sub`), or a `community_owner` token whose `communities` claim names it.
"""

from __future__ import annotations

from commdesk_billing.errors import Forbidden
from commdesk_billing.modules.communities.directory import Community
from commdesk_billing.security.jwt import Principal, Role, Scope
from commdesk_billing.security.roles import FINANCE_READERS, PEOPLE


def owns(principal: Principal, community: Community) -> bool:
    if principal.role is Role.community_owner and community.id in principal.communities:
        return True
    return principal.role in PEOPLE and community.is_owner(principal.sub)


def spender(principal: Principal, user_id: str | None) -> str:
    """Whose credits are spent: the member's own (no `user_id`, or their own), or the named
    member's when a service with `communities:spend` asks."""
    if principal.role is Role.service:
        if not principal.has(Scope.communities_spend):
            raise Forbidden("a service needs the communities:spend scope")
        if user_id is None:
            raise Forbidden("a service must name the member (user_id) whose credits it spends")
        return user_id
    if principal.role not in PEOPLE:
        raise Forbidden("only people and services spend credits")
    if user_id is not None and user_id != principal.sub:
        raise Forbidden("members spend their own credits only")
    return principal.sub


def authorize_earnings_read(principal: Principal, community: Community) -> None:
    if principal.role in FINANCE_READERS or owns(principal, community):
        return
    raise Forbidden("only the community's owners, finance_admin and auditor see its earnings")


def authorize_fee_plan_change(principal: Principal) -> None:
    if principal.role is not Role.finance_admin:
        raise Forbidden("only finance_admin sets a community's fee plan")


def authorize_reversal(principal: Principal, community: Community | None) -> None:
    if principal.role is Role.finance_admin:
        return
    if community is not None and owns(principal, community):
        return
    raise Forbidden("only finance_admin or the community's owners reverse a spend")
