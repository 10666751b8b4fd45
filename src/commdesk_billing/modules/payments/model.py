"""Payment rows and the pack catalog, as the service sees them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from commdesk_billing.modules.payments.state import Status


@dataclass(frozen=True)
class Pack:
    code: str
    version: int
    name: str
    price_paise: int
    base_credits: int
    bonus_credits: int

    @property
    def credits(self) -> int:
        return self.base_credits + self.bonus_credits


# Kinds of payment that buy credits. Any other kind (`sponsorship`) is opened by another
# module through `ordering.open_charge` and handed back to it when paid (`crediting`).
CREDIT_KINDS = frozenset({"pack", "custom"})


@dataclass(frozen=True)
class Payment:
    id: uuid.UUID
    user_id: uuid.UUID
    wallet_id: uuid.UUID
    order_id: str
    idempotency_key: str
    request_hash: str
    payment_session_id: str | None
    cashfree_order_id: str | None
    cashfree_payment_id: str | None
    kind: str
    pack_code: str | None
    pack_version: int | None
    amount_paise: int
    taxable_paise: int
    gst_amount_paise: int
    cgst_paise: int
    sgst_paise: int
    igst_paise: int
    gst_mode: str
    gst_rate_bp: int
    buyer_state: str
    seller_state: str
    base_credits: int
    bonus_credits: int
    credits_granted: int
    platform_fee_paise: int
    # What the payment collects for someone else (a sponsorship's community part, held in
    # escrow); 0 for a credit purchase. taxable + GST + passthrough = amount.
    passthrough_paise: int
    currency: str
    status: Status
    payment_method: str | None
    payment_group: str | None
    customer_phone: str | None
    customer_email: str | None
    metadata: dict[str, Any]
    webhook_verified: bool
    refunded: bool
    refund_amount_paise: int | None
    fraud_score: float | None
    retry_count: int
    retry_of: uuid.UUID | None
    order_expires_at: datetime
    create_response: Any
    failure_code: str | None
    failure_reason: str | None
    paid_at: datetime | None
    credited_at: datetime | None
    last_synced_at: datetime | None
    sync_count: int
    created_at: datetime
    updated_at: datetime
    # 'order' (a PG order, checkout) or 'mandate' (a charge raised on a mandate: Cashfree
    # Subscriptions, `mandate_charges.py`): which API holds the payment's truth.
    channel: str = "order"
    subscription_id: str | None = None  # the mandate's Cashfree subscription (mandate only)
    schedule_date: date | None = None  # the debit date asked for (mandate only)
    pdn_at: datetime | None = None  # when Cashfree's pre-debit notice was seen (mandate only)

    @property
    def credits(self) -> int:
        return self.base_credits + self.bonus_credits

    @property
    def on_mandate(self) -> bool:
        return self.channel == "mandate"

    @property
    def buys_credits(self) -> bool:
        """A credit purchase (a pack or a top-up); else a payment handed over to the module
        that opened it (a sponsorship), which grants no credits."""
        return self.kind in CREDIT_KINDS

    @classmethod
    def from_row(cls, row: Any) -> Payment:
        data = dict(row._mapping)
        data["status"] = Status(data["status"])
        return cls(**data)
