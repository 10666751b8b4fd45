"""Who may read and act on fraud decisions (DESIGN §7), in the role sets of
`security.roles`: finance and support read the queue and the profiles (support must see
why a member was blocked); finance alone decides and keeps the lists."""

from __future__ import annotations

from commdesk_billing.errors import Forbidden
from commdesk_billing.security.jwt import Principal, Role
from commdesk_billing.security.roles import MONEY_OPERATORS


def may_read(caller: Principal) -> None:
    if caller.role not in MONEY_OPERATORS:
        raise Forbidden("only finance_admin or support may read fraud decisions")


def may_decide(caller: Principal) -> None:
    if caller.role is not Role.finance_admin:
        raise Forbidden("only finance_admin may decide a fraud review or change the lists")
