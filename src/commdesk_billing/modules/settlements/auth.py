"""Who may do what with settlements (DESIGN §7); role sets from `security.roles`.

Finance runs settlements; finance readers (finance_admin, auditor) read any; a community
payee's owners read their community's settlements and statements.
"""

from __future__ import annotations

from commdesk_billing.errors import Forbidden
from commdesk_billing.security.jwt import Principal, Role
from commdesk_billing.security.roles import FINANCE_READERS, PEOPLE


def authorize_run(principal: Principal) -> None:
    if principal.role is not Role.finance_admin:
        raise Forbidden("only finance_admin runs settlements")


def is_finance_reader(principal: Principal) -> bool:
    return principal.role in FINANCE_READERS


def authorize_owner_read(principal: Principal) -> None:
    """Other than finance readers, only people (a community's owners among them) are looked
    at further; a service reads no settlement."""
    if principal.role not in PEOPLE:
        raise Forbidden("only finance readers and a community's owners read settlements")


def community_of(payable_code: str) -> str | None:
    """The community a payable account belongs to (`community:<id>:payable`), if any."""
    kind, _, rest = payable_code.partition(":")
    return rest.rsplit(":", 1)[0] if kind == "community" else None
