"""Who may do what with partners (DESIGN §7); role sets from `security.roles`.

Finance sets partners up and reads what they earned (the auditor reads too); which partner
brought a user is said by another CommDesk service, with the `partners:attribute` scope.
"""

from __future__ import annotations

from commdesk_billing.errors import Forbidden
from commdesk_billing.security.jwt import Principal, Role, Scope
from commdesk_billing.security.roles import FINANCE_READERS


def authorize_change(principal: Principal) -> None:
    if principal.role is not Role.finance_admin:
        raise Forbidden("only finance_admin creates a partner or changes its share")


def authorize_attribution(principal: Principal) -> None:
    if principal.role is not Role.service or not principal.has(Scope.partners_attribute):
        raise Forbidden("only a service with the partners:attribute scope attributes users")


def authorize_earnings_read(principal: Principal) -> None:
    if principal.role not in FINANCE_READERS:
        raise Forbidden("only finance_admin and auditor see a partner's earnings")
