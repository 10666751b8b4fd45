"""Easy Split's state: vendors, each order's split, the vendors' ledgers and settlements, and
the merchant's settlements. In memory, changed on the server's one event loop (no locks).

A vendor's balance is a list of `Entry` (credits from paid split orders, debits from refunds)
and the settlements that took them; `vendor_unsettled` is the sum of the entries no
settlement holds, plus what failed or reversed settlements gave back.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any


@dataclass(frozen=True, slots=True)
class Split:
    """One `order_splits` entry: exactly one of `amount_paise` and `percentage`."""

    vendor_id: str
    amount_paise: int | None
    percentage: Decimal | None
    tags: dict[str, Any] | None

    def share(self, order_paise: int) -> int:
        """The vendor's paise of an order: a percentage rounded down to the paisa (the
        remainder is the merchant's)."""
        if self.amount_paise is not None:
            return self.amount_paise
        assert self.percentage is not None
        hundredths = int(self.percentage * 100)  # two decimals at most (validated)
        return order_paise * hundredths // 10_000


@dataclass(slots=True)
class Vendor:
    vendor_id: str
    status: str  # IN_BENE_CREATION | ACTIVE | BLOCKED | DELETED
    name: str
    email: str
    phone: str
    bank: dict[str, str] | None  # account_number, account_holder, ifsc
    upi: dict[str, str] | None  # vpa, account_holder
    kyc: dict[str, Any]
    verify_account: bool
    dashboard_access: bool
    schedule_option: int
    added_on: datetime
    updated_on: datetime
    # The status asked for at create, taken once the beneficiary exists (KYC passed).
    wanted_status: str = "ACTIVE"
    active_at: datetime | None = None  # when IN_BENE_CREATION ends
    # After a FAILED or REVERSED settlement the balance waits a whole cycle before the next
    # scheduled one (the control API's settle-now does not wait).
    hold_until: datetime | None = None
    remarks: str | None = None


@dataclass(slots=True)
class Entry:
    """One movement of a vendor's unsettled balance."""

    seq: int
    vendor_id: str
    order_id: str
    kind: str  # PAYMENT (a credit) | REFUND (a debit)
    entity_id: str  # cf_payment_id or cf_refund_id
    amount_paise: int  # signed: credits positive, debits negative
    at: datetime
    settlement_id: int | None = None


@dataclass(slots=True)
class VendorSettlement:
    settlement_id: int
    vendor_id: str
    entry_seqs: list[int]
    vendor_transaction_paise: int  # the credits it takes
    adjustment_paise: int  # debits and what earlier settlements carried (signed)
    payment_from: datetime
    payment_till: datetime
    initiated_on: datetime
    account_mode: str  # BANK | UPI
    utr: str
    status: str = "CREATED"  # CREATED -> SUCCESS [-> REVERSED] | FAILED
    settled_on: datetime | None = None
    reason: str | None = None
    due_at: datetime | None = None  # when the next step happens on the sandbox clock
    outcome: str = "SUCCESS"  # SUCCESS | FAILED | REVERSED, fixed at creation (faults)

    @property
    def amount_paise(self) -> int:
        return self.vendor_transaction_paise + self.adjustment_paise


@dataclass(slots=True)
class Event:
    """A line of the merchant's settlement report: a captured payment or a refund."""

    event_id: str  # cf_payment_id or cf_refund_id
    event_type: str  # PAYMENT | REFUND
    order_id: str
    amount_paise: int
    service_charge_paise: int
    service_tax_paise: int
    vendor_paise: int  # the vendors' part (credit on a payment, debit on a refund)
    at: datetime
    settlement_id: int | None = None
    # Planted (`/_sandbox/recon/events/{id}`): no settlement takes it (held by Cashfree).
    held: bool = False

    @property
    def settlement_paise(self) -> int:
        """What the event adds to (PAYMENT) or takes from (REFUND) the merchant's settlement,
        written positive; the sign is the row's `sale_type`."""
        return self.amount_paise - self.service_charge_paise - self.service_tax_paise


@dataclass(slots=True)
class Settlement:
    """A merchant settlement (§7): captured payments minus refunds, charges and the vendors'
    part, paid to the merchant with one UTR."""

    cf_settlement_id: int
    event_ids: list[str]
    payment_paise: int
    refund_paise: int
    service_charge_paise: int
    service_tax_paise: int
    vendor_commission_paise: int
    payment_from: datetime
    payment_till: datetime
    initiated_on: datetime
    settled_on: datetime
    utr: str
    status: str = "SUCCESS"

    @property
    def amount_paise(self) -> int:
        return (
            self.payment_paise
            - self.refund_paise
            - self.service_charge_paise
            - self.service_tax_paise
            - self.vendor_commission_paise
        )


@dataclass(slots=True)
class SplitStore:
    vendors: dict[str, Vendor] = field(default_factory=dict)
    order_splits: dict[str, list[Split]] = field(default_factory=dict)  # order_id -> split
    entries: list[Entry] = field(default_factory=list)
    vendor_settlements: dict[int, VendorSettlement] = field(default_factory=dict)
    events: dict[str, Event] = field(default_factory=dict)  # event_id -> event
    settlements: dict[int, Settlement] = field(default_factory=dict)
    # Cashfree's settlement ids are integers; start from the clock so a restarted sandbox
    # never repeats one (nor the webhook idempotency keys built from them).
    _ids: itertools.count[int] = field(
        default_factory=lambda: itertools.count(time.time_ns() // 1_000_000 % 10**9 * 10)
    )

    def next_settlement_id(self) -> int:
        return next(self._ids)

    def vendor_entries(self, vendor_id: str) -> list[Entry]:
        return [e for e in self.entries if e.vendor_id == vendor_id]

    def order_entries(self, order_id: str) -> list[Entry]:
        return [e for e in self.entries if e.order_id == order_id]
