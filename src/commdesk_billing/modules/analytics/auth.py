"""Who reads financial analytics, the trial balance and the GST summary: finance_admin and
the auditor (`security.roles.FINANCE_READERS`). Nothing here writes."""

from __future__ import annotations

from commdesk_billing.errors import Forbidden
from commdesk_billing.security.jwt import Principal
from commdesk_billing.security.roles import FINANCE_READERS


def may_read(caller: Principal) -> None:
    if caller.role not in FINANCE_READERS:
        raise Forbidden("only finance_admin or auditor may read financial analytics")
