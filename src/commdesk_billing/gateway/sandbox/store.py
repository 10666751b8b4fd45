"""The sandbox's state: orders, payment attempts, refunds and simulations, in memory.

A restart forgets everything. All mutation happens on the server's one event loop between
awaits, so no locks are needed around these dictionaries.
"""

from __future__ import annotations

import itertools
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class OrderStatus(StrEnum):
    ACTIVE = "ACTIVE"
    PAID = "PAID"
    EXPIRED = "EXPIRED"
    TERMINATED = "TERMINATED"
    TERMINATION_REQUESTED = "TERMINATION_REQUESTED"


class PaymentStatus(StrEnum):
    NOT_ATTEMPTED = "NOT_ATTEMPTED"
    PENDING = "PENDING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    USER_DROPPED = "USER_DROPPED"


OPEN_PAYMENT = frozenset({PaymentStatus.NOT_ATTEMPTED, PaymentStatus.PENDING})


class RefundStatus(StrEnum):
    PENDING = "PENDING"
    SUCCESS = "SUCCESS"
    CANCELLED = "CANCELLED"
    ONHOLD = "ONHOLD"


@dataclass(frozen=True, slots=True)
class Failure:
    """`error_details` of a payment that did not succeed."""

    code: str
    description: str
    reason: str
    source: str
    message: str  # the payment's `payment_message`


@dataclass(slots=True)
class Order:
    cf_order_id: str
    order_id: str
    amount_paise: int
    currency: str
    customer: dict[str, Any]
    meta: dict[str, Any]
    expiry: datetime
    note: str | None
    tags: dict[str, str] | None
    splits: list[dict[str, Any]]
    cart_details: dict[str, Any] | None
    created_at: datetime
    payment_session_id: str
    status: OrderStatus = OrderStatus.ACTIVE
    payment_ids: list[str] = field(default_factory=list)
    refund_ids: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Payment:
    cf_payment_id: str
    order_id: str
    amount_paise: int
    currency: str
    group: str  # payment_group: upi, credit_card, net_banking
    method: dict[str, Any]  # the one-key `payment_method` object
    channel: str
    started_at: datetime
    status: PaymentStatus = PaymentStatus.PENDING
    message: str = "Transaction pending"
    completed_at: datetime | None = None
    bank_reference: str | None = None
    failure: Failure | None = None


@dataclass(slots=True)
class Refund:
    cf_refund_id: str
    cf_payment_id: str
    order_id: str
    refund_id: str
    amount_paise: int
    currency: str
    note: str | None
    speed: str
    created_at: datetime
    # The request fields, to tell a retry (same body: 200 with this refund) from a clash.
    request_fingerprint: str
    # Each vendor's debit (Easy Split): (vendor_id, paise); `explicit`: from `refund_splits`
    # (echoed on the wire), else in proportion to the vendors' shares (not echoed).
    splits: list[tuple[str, int]] = field(default_factory=list)
    explicit_splits: bool = False
    status: RefundStatus = RefundStatus.PENDING
    processed_at: datetime | None = None
    arn: str | None = None
    description: str = "Refund is pending"


@dataclass(slots=True)
class Simulation:
    simulation_id: str
    entity: str
    entity_id: str
    payment_status: str
    payment_error_code: str | None


class Store:
    def __init__(self) -> None:
        self.orders: dict[str, Order] = {}
        self.sessions: dict[str, str] = {}  # payment_session_id -> order_id
        self.payments: dict[str, Payment] = {}
        self.refunds: dict[tuple[str, str], Refund] = {}  # (order_id, refund_id)
        self.simulations: dict[str, Simulation] = {}
        # Numeric ids, strings on the wire; the starting points only make them look real.
        # Cashfree's ids are unique for ever; a restarted sandbox must not hand out the ids
        # (and so the webhook idempotency keys) of the previous run: start from the clock.
        base = time.time_ns() // 1_000 % 10**11
        self._cf_order = itertools.count(2 * 10**11 + base)
        self._cf_payment = itertools.count(5 * 10**11 + base)
        self._cf_refund = itertools.count(1 * 10**11 + base)
        self._simulation = itertools.count(1)
        self._generated = itertools.count(1)

    def next_cf_order_id(self) -> str:
        return str(next(self._cf_order))

    def next_cf_payment_id(self) -> str:
        return str(next(self._cf_payment))

    def next_cf_refund_id(self) -> str:
        return str(next(self._cf_refund))

    def next_simulation_id(self) -> str:
        return f"sim_{next(self._simulation)}"

    def generated_id(self, prefix: str) -> str:
        return f"{prefix}_{next(self._generated)}{secrets.token_hex(8)}"

    @staticmethod
    def new_session_id() -> str:
        return "session_" + secrets.token_urlsafe(48).replace("-", "x").replace("_", "y")

    def order_payments(self, order: Order) -> list[Payment]:
        return [self.payments[p] for p in order.payment_ids]

    def order_refunds(self, order: Order) -> list[Refund]:
        return [self.refunds[(order.order_id, r)] for r in order.refund_ids]
