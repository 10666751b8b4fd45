"""Who may do what with sponsorships (DESIGN §7, §11); role sets from `security.roles`.

A sponsor (the `sponsor` role) opens sponsorships and reads its own; the community's owners
(as `communities.auth.owns` says) mark milestones delivered and read the community's
sponsorships; finance_admin or the sponsor who paid releases a delivered milestone;
finance_admin and the auditor read everything.
"""

from __future__ import annotations

from commdesk_billing.errors import Forbidden
from commdesk_billing.modules.communities import auth as communities
from commdesk_billing.modules.communities.directory import Community
from commdesk_billing.security.jwt import Principal, Role
from commdesk_billing.security.roles import FINANCE_READERS


def authorize_create(principal: Principal) -> None:
    if principal.role is not Role.sponsor:
        raise Forbidden("only a sponsor's token opens a sponsorship")


def authorize_own_list(principal: Principal) -> None:
    if principal.role is not Role.sponsor:
        raise Forbidden("only a sponsor lists its own sponsorships")


def is_sponsor(principal: Principal, sponsor_subject: bool) -> bool:
    """`sponsor_subject`: the sponsorship's payer is this token's subject."""
    return principal.role is Role.sponsor and sponsor_subject


def may_read(principal: Principal, *, sponsor: bool, community: Community | None) -> bool:
    if principal.role in FINANCE_READERS or sponsor:
        return True
    return community is not None and communities.owns(principal, community)


def authorize_deliver(principal: Principal, community: Community) -> None:
    if not communities.owns(principal, community):
        raise Forbidden("only the community's owners mark a milestone delivered")


def authorize_release(principal: Principal, *, sponsor: bool) -> None:
    if principal.role is Role.finance_admin or sponsor:
        return
    raise Forbidden("only finance_admin or the sponsor who paid releases a milestone")


def authorize_community_list(principal: Principal, community: Community) -> None:
    communities.authorize_earnings_read(principal, community)
