"""Subscriptions' state in memory: plans, subscriptions and their payments (authorisations and
charges). Mutated only on the server's event loop, between awaits."""

from __future__ import annotations

import itertools
import secrets
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

# Subscription statuses (cashfree.md §12.4).
INITIALIZED = "INITIALIZED"
ACTIVE = "ACTIVE"
ON_HOLD = "ON_HOLD"
PAUSED = "PAUSED"
CUSTOMER_PAUSED = "CUSTOMER_PAUSED"
CUSTOMER_CANCELLED = "CUSTOMER_CANCELLED"
CANCELLED = "CANCELLED"
LINK_EXPIRED = "LINK_EXPIRED"
ENDED = frozenset({CUSTOMER_CANCELLED, CANCELLED, LINK_EXPIRED, "COMPLETED", "EXPIRED"})

# Payment statuses.
P_INITIALIZED = "INITIALIZED"
P_PENDING = "PENDING"
P_SUCCESS = "SUCCESS"
P_FAILED = "FAILED"
P_CANCELLED = "CANCELLED"
OPEN = frozenset({P_INITIALIZED, P_PENDING})

# Refund statuses (§12.4 lists INITIALIZED, SUCCESS, CANCEL, PENDING, FAILED; the sandbox
# answers PENDING, then SUCCESS or FAILED).
R_PENDING = "PENDING"
R_SUCCESS = "SUCCESS"
R_FAILED = "FAILED"


@dataclass(slots=True)
class Plan:
    plan_id: str
    plan_name: str
    plan_type: str
    max_amount_paise: int
    recurring_amount_paise: int | None = None
    max_cycles: int | None = None
    intervals: int | None = None
    interval_type: str | None = None
    note: str | None = None
    currency: str = "INR"
    status: str = "ACTIVE"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happens when a charge is debited. `kind`: success, failure (`failed_attempts`
    attempts fail with `reason`, then one succeeds if any are left), revoked or paused (the
    payer did it just before the debit)."""

    kind: str
    reason: str = "INSUFFICIENT_FUNDS"
    failed_attempts: int = 99


@dataclass(slots=True)
class Subscription:
    cf_subscription_id: str
    subscription_id: str
    session_id: str
    plan: Plan
    customer: dict[str, Any]
    auth_amount_paise: int
    auth_amount_refund: bool
    methods: list[str]
    meta: dict[str, Any]
    tags: dict[str, str] | None
    note: str | None
    expiry_time: datetime
    first_charge_time: datetime | None
    link_expires_at: datetime
    created_at: datetime
    status: str = INITIALIZED
    auth_status: str = INITIALIZED
    auth_payment_id: str | None = None
    auth_method: str | None = None
    auth_reference: str | None = None
    authorized_at: datetime | None = None
    payer_vpa: str | None = None
    # Outcomes for the next debits, first first (control API); success when empty.
    outcomes: list[Outcome] = field(default_factory=list)
    # Refusals (code, message) for the next CHARGE requests, first first (control API): each
    # answers one request with a 400 before its payment_id is looked up, as a Cashfree that
    # validates the request first answers a repeat that has become invalid (a schedule date
    # now past its cut-off) even when the first request made the charge.
    refusals: list[tuple[str, str]] = field(default_factory=list)


@dataclass(slots=True)
class SubsPayment:
    cf_payment_id: str
    payment_id: str
    subscription_id: str
    payment_type: str  # AUTH | CHARGE
    amount_paise: int
    initiated_at: datetime
    fingerprint: str
    status: str = P_INITIALIZED
    schedule_date: date | None = None
    remarks: str | None = None
    method: str | None = None
    failure_reason: str | None = None
    retry_attempts: int = 0
    # Charges: when the pre-debit notification went, and when the next debit attempt is due.
    pdn_at: datetime | None = None
    pdn_count: int = 0
    debit_at: datetime | None = None
    attempts: int = 0
    outcome: Outcome | None = None
    cf_txn_id: str | None = None
    completed_at: datetime | None = None


@dataclass(slots=True)
class SubsRefund:
    """A refund of a charge (`POST /subscriptions/{id}/refunds`): PENDING until `settle_at`
    on the sandbox clock, then `final` (SUCCESS or FAILED); `final` None stays PENDING."""

    cf_refund_id: str
    refund_id: str
    subscription_id: str
    payment_id: str
    cf_payment_id: str
    amount_paise: int
    note: str | None
    speed: str
    created_at: datetime
    fingerprint: str
    settle_at: datetime | None
    final: str | None
    status: str = R_PENDING
    processed_at: datetime | None = None


class SubsStore:
    def __init__(self) -> None:
        self.plans: dict[str, Plan] = {}
        self.subscriptions: dict[str, Subscription] = {}
        self.sessions: dict[str, str] = {}  # subscription_session_id -> subscription_id
        self.payments: dict[str, SubsPayment] = {}  # by merchant payment_id
        self._cf_sub = itertools.count(4_100_001)
        self._cf_pay = itertools.count(7_700_001)
        self._cf_refund = itertools.count(8_800_001)
        # by (subscription_id, refund_id): Cashfree keeps a refund id unique per subscription
        self.refunds: dict[tuple[str, str], SubsRefund] = {}
        self._sims = itertools.count(1)

    def next_cf_subscription_id(self) -> str:
        return str(next(self._cf_sub))

    def next_cf_payment_id(self) -> str:
        return str(next(self._cf_pay))

    def next_cf_refund_id(self) -> str:
        return str(next(self._cf_refund))

    def next_simulation_id(self) -> str:
        return f"subs_sim_{next(self._sims)}"

    @staticmethod
    def new_session_id() -> str:
        return "subs_session_" + secrets.token_urlsafe(24)

    def subscription_payments(self, subscription_id: str) -> list[SubsPayment]:
        return [p for p in self.payments.values() if p.subscription_id == subscription_id]

    def payment_refunds(self, payment_id: str) -> list[SubsRefund]:
        return [r for r in self.refunds.values() if r.payment_id == payment_id]
