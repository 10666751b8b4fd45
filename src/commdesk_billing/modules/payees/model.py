"""Payee records, as read from the database."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum


class PayeeKind(StrEnum):
    community = "community"  # subject_id: the community's id in CommDesk's MongoDB
    partner = "partner"  # subject_id: the partner's id (`partners`)


class PayeeStatus(StrEnum):
    active = "active"
    suspended = "suspended"  # never paid out while suspended; its payable keeps accruing


class PayoutMethod(StrEnum):
    bank = "bank"
    upi = "upi"


class Verification(StrEnum):
    pending = "pending"
    verified = "verified"
    failed = "failed"


def beneficiary_id_for(payee_id: uuid.UUID, version: int) -> str:
    """The Cashfree beneficiary of the payee's account first registered by `version` (1-50
    of letters, digits, `_|.`). A later version of the same account (its fingerprint)
    reuses it: Cashfree holds one beneficiary per account. `BENEFICIARY_ID_SQL` is this
    rule in SQL, for the `payout_accounts` check: change both together."""
    return f"cdb{payee_id.hex}v{version}"


# `beneficiary_id_for(o.payee_id, o.version)` for a `payout_accounts` row aliased `o`.
BENEFICIARY_ID_SQL = "'cdb' || replace(o.payee_id::text, '-', '') || 'v' || o.version"


@dataclass(frozen=True)
class Payee:
    id: uuid.UUID
    kind: PayeeKind
    subject_id: str
    display_name: str
    status: PayeeStatus
    created_by: str
    created_at: datetime
    updated_at: datetime

    @property
    def payable_code(self) -> str:
        """The ledger account that holds what we owe this payee."""
        return f"{self.kind.value}:{self.subject_id}:payable"


@dataclass(frozen=True)
class PayoutTarget:
    """Where a settlement of this payee may be paid, now: its current account, verified,
    with a Cashfree beneficiary, past its cooling-off. Nothing else is ever paid."""

    payee: Payee
    account_id: uuid.UUID
    account_version: int
    method: PayoutMethod
    account_mask: str
    beneficiary_id: str


@dataclass(frozen=True)
class PayoutAccount:
    """One version of a payee's payout account. The bank number itself is only in
    `account_sealed` (never shown, never logged); `account_mask` is what anyone sees."""

    id: uuid.UUID
    payee_id: uuid.UUID
    version: int
    method: PayoutMethod
    account_holder: str
    account_sealed: str | None = field(repr=False)
    account_fingerprint: str = field(repr=False)
    account_mask: str
    ifsc: str | None
    vpa: str | None
    verification_status: Verification
    name_match_result: str | None
    # The weakest match accepted when it was verified (a bank account's; None for a VPA).
    name_match_min: str | None
    name_match_score: Decimal | None
    name_at_bank: str | None
    verification_ref: str | None
    verification_detail: str | None
    verified_at: datetime | None
    beneficiary_id: str | None
    payouts_blocked_until: datetime
    # The cooling-off this version was made with (0: no verified version before it), so
    # `payouts_blocked_until` = created_at + it can be checked from the row.
    cooling_off_s: int
    created_by: str
    created_at: datetime
    superseded_at: datetime | None

    @property
    def current(self) -> bool:
        return self.superseded_at is None

    def payable_at(self, at: datetime) -> bool:
        """Could a settlement pay this version at `at` (its payee being active)? The same
        rule as `targets._TARGET`."""
        return (
            self.current
            and self.verification_status is Verification.verified
            and self.beneficiary_id is not None
            and self.payouts_blocked_until <= at
        )
