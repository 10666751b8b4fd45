"""The Payouts side's state: beneficiaries, transfers and bank-account verifications, in memory.

As on the PG side, everything changes on the server's one event loop between awaits, so the
dictionaries need no locks, and a restart forgets them all.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class Instrument:
    """Where money goes: a bank account and IFSC, or a UPI VPA (or both)."""

    bank_account_number: str | None
    bank_ifsc: str | None
    vpa: str | None


@dataclass(slots=True)
class Beneficiary:
    beneficiary_id: str
    name: str
    instrument: Instrument
    contact: dict[str, Any]
    status: str  # VERIFIED | INVALID (cashfree.md §6.2's set)
    added_on: datetime


@dataclass(frozen=True, slots=True)
class Plan:
    """How a transfer will end, fixed when it is created (test account, faults)."""

    status: str  # SUCCESS | FAILED | REJECTED
    status_code: str | None  # the failure code; None for a success
    pending_s: float | None  # extra time PENDING before the outcome; None: for ever
    reverse_code: str | None  # a success reversed later with this code


@dataclass(slots=True)
class Transfer:
    transfer_id: str
    cf_transfer_id: str
    beneficiary_id: str | None
    instrument: Instrument
    amount_paise: int
    currency: str
    mode: str
    remarks: str | None
    fundsource_id: str
    added_on: datetime
    plan: Plan
    # The request's own fields, to tell a repeat of this create from a different transfer.
    request_fingerprint: str
    status: str = "RECEIVED"
    status_code: str = "RECEIVED"
    updated_on: datetime | None = None
    utr: str | None = None
    # When the next step of the state machine is due on the sandbox clock (None: no more).
    next_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Verification:
    """One bank-account verification (Secure ID BAV V2) and what it answered."""

    reference_id: int
    user_id: str | None
    bank_account: str
    ifsc: str
    name_given: str
    answer: dict[str, Any]


@dataclass
class PayoutStore:
    beneficiaries: dict[str, Beneficiary] = field(default_factory=dict)
    transfers: dict[str, Transfer] = field(default_factory=dict)  # by transfer_id
    by_cf_id: dict[str, str] = field(default_factory=dict)  # cf_transfer_id -> transfer_id
    verifications: dict[int, Verification] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Like the PG ids: unique across restarts, so a new run never reuses a webhook's key.
        base = time.time_ns() // 1_000 % 10**10
        self._cf_transfer = itertools.count(3 * 10**10 + base)
        self._reference = itertools.count(base % 10**8 + 1)

    def next_cf_transfer_id(self) -> str:
        return str(next(self._cf_transfer))

    def next_reference_id(self) -> int:
        return next(self._reference)

    def beneficiary_for(self, instrument: Instrument) -> Beneficiary | None:
        """The live beneficiary with this bank account + IFSC (or VPA), if any."""
        for bene in self.beneficiaries.values():
            same_bank = (
                instrument.bank_account_number is not None
                and bene.instrument.bank_account_number == instrument.bank_account_number
                and bene.instrument.bank_ifsc == instrument.bank_ifsc
            )
            same_vpa = instrument.vpa is not None and bene.instrument.vpa == instrument.vpa
            if same_bank or same_vpa:
                return bene
        return None
