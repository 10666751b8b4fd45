"""The one place a payee's account number is opened: to register a community as a Cashfree
Easy Split vendor (cashfree.md §6.1), whose create call needs the account itself.

`for_vendor` returns the community payee's current, verified payout account with the
number opened (`security/sealed.py`, the payee's id as associated data). The result hides
the number from its repr; callers pass it to Cashfree and nowhere else, and never log it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.modules.payees import repository as repo
from commdesk_billing.modules.payees.model import (
    Payee,
    PayeeKind,
    PayeeStatus,
    PayoutAccount,
    PayoutMethod,
    Verification,
)
from commdesk_billing.security.sealed import KeyRing


@dataclass(frozen=True)
class VendorAccount:
    """What an Easy Split vendor is registered with. `number` is None for a VPA."""

    payee_id: uuid.UUID
    account_id: uuid.UUID
    method: PayoutMethod
    holder: str
    ifsc: str | None
    vpa: str | None = field(repr=False)
    number: str | None = field(repr=False)
    mask: str
    # The payees' cooling-off (`payees/service.py`): nothing may pay this account before.
    payouts_blocked_until: datetime


async def _current(conn: AsyncConnection, community_id: str) -> tuple[Payee, PayoutAccount] | None:
    """The community's payee, active, and its current account, verified; None otherwise."""
    found = await repo.list_payees(
        conn, kind=PayeeKind.community, subject_id=community_id, before=None, limit=1
    )
    payee = found[0] if found else None
    if payee is None or payee.status is not PayeeStatus.active:
        return None
    account = await repo.current_account(conn, payee.id)
    if account is None or account.verification_status is not Verification.verified:
        return None
    return payee, account


async def still_current(conn: AsyncConnection, community_id: str, account_id: uuid.UUID) -> bool:
    """Is `account_id` (the account a vendor was registered with) what the community's payee
    may be paid to now: the payee active, the account its current one, verified? Cashfree
    settles a vendor to the account it holds, so a suspended payee or a replaced account
    must take no more split parts (nothing is opened here)."""
    found = await _current(conn, community_id)
    return found is not None and found[1].id == account_id


async def for_vendor(
    conn: AsyncConnection, ring: KeyRing, community_id: str
) -> VendorAccount | None:
    """The community payee's current account, verified, of an active payee; None when
    there is no such account (no payee, suspended, none verified)."""
    found = await _current(conn, community_id)
    if found is None:
        return None
    payee, account = found
    number = None
    if account.method is PayoutMethod.bank:
        assert account.account_sealed is not None, "a bank account is stored sealed"
        number = ring.open(account.account_sealed, owner=str(payee.id))
    return VendorAccount(
        payee_id=payee.id,
        account_id=account.id,
        method=account.method,
        holder=account.account_holder,
        ifsc=account.ifsc,
        vpa=account.vpa,
        number=number,
        mask=account.account_mask,
        payouts_blocked_until=account.payouts_blocked_until,
    )
