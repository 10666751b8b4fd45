"""Who reads the audit log: the auditor, and finance_admin (who acts on it: a payout account
changed during its cooling-off, a grant nobody asked for). Nobody edits it: the database
refuses UPDATE, DELETE and TRUNCATE."""

from __future__ import annotations

from commdesk_billing.errors import Forbidden
from commdesk_billing.security.jwt import Principal
from commdesk_billing.security.roles import FINANCE_READERS


def authorize_read(principal: Principal) -> None:
    if principal.role not in FINANCE_READERS:
        raise Forbidden("only auditor and finance_admin read the audit log")
