"""Who may read and act on reconciliation findings (DESIGN §7): finance and the auditor
read them; finance alone explains or resolves one."""

from __future__ import annotations

from commdesk_billing.errors import Forbidden
from commdesk_billing.security.jwt import Principal, Role
from commdesk_billing.security.roles import FINANCE_READERS


def may_read(caller: Principal) -> None:
    if caller.role not in FINANCE_READERS:
        raise Forbidden("only finance_admin or auditor may read reconciliation findings")


def may_act(caller: Principal) -> None:
    if caller.role is not Role.finance_admin:
        raise Forbidden("only finance_admin may explain or resolve a reconciliation finding")
