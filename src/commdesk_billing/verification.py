"""Which checks `ledger verify` runs, and in which order: the one place they are composed.

Each module owns its rules and exports them as `CHECKS` from its `invariants.py`
(`modules/ledger/verify.py` says how to write one). The order is the order of the report's
findings and stats: the ledger's books, then the wallets', refunds' and documents' rules,
and the seals last.
"""

from __future__ import annotations

from commdesk_billing.modules.invoices import invariants as invoices
from commdesk_billing.modules.ledger import invariants as ledger
from commdesk_billing.modules.ledger.verify import Check
from commdesk_billing.modules.refunds import invariants as refunds
from commdesk_billing.modules.wallet import invariants as wallet


def default_checks() -> tuple[Check, ...]:
    return (
        *ledger.CHECKS,
        *wallet.CHECKS,
        *refunds.CHECKS,
        *invoices.CHECKS,
        *ledger.SEAL_CHECKS,
    )
