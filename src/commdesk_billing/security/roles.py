"""The role sets, named once (DESIGN §7). Each module's `auth.py` states its own rules in
these terms; the API test suite walks every route against every role."""

from __future__ import annotations

from commdesk_billing.security.jwt import Role

# Staff who may read any customer's wallet, payments and refunds.
STAFF_READERS = frozenset({Role.finance_admin, Role.support, Role.auditor})
# Staff who may act on a customer's money: refund a purchase, ask Cashfree again.
MONEY_OPERATORS = frozenset({Role.finance_admin, Role.support})
# Who may read anyone's tax documents (finance, and the auditor who checks it).
FINANCE_READERS = frozenset({Role.finance_admin, Role.auditor})
# Roles that are people, and so can own a wallet and buy credits.
PEOPLE = frozenset(set(Role) - {Role.service})
