"""Who may do what with a community's Easy Split vendor (DESIGN §7, §11); role sets from
`security.roles`. finance_admin registers it (the KYC details are finance's to give); the
community's owners, finance_admin and the auditor read it."""

from __future__ import annotations

from commdesk_billing.errors import Forbidden
from commdesk_billing.modules.communities import auth as communities
from commdesk_billing.modules.communities.directory import Community
from commdesk_billing.security.jwt import Principal, Role
from commdesk_billing.security.roles import FINANCE_READERS


def authorize_register(principal: Principal) -> None:
    if principal.role is not Role.finance_admin:
        raise Forbidden("only finance_admin registers a community as an Easy Split vendor")


def authorize_read(principal: Principal, community: Community) -> None:
    if principal.role in FINANCE_READERS or communities.owns(principal, community):
        return
    raise Forbidden("only the community's owners, finance_admin and auditor see its vendor")
