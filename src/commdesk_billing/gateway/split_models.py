"""Tolerant models of Easy Split (vendors, balances, split recon, vendor settlement webhooks)
and of the settlement reports (cashfree.md §6.1, §7, §14), and the split shares we send.

The rules of `models.py` (unknown fields ignored, statuses plain upper-case strings, ids as
text, exact paise, odd times None), plus two of their own:

- Cashfree's docs and its SDK disagree on shapes (§6.1): a vendor's `bank` and
  `schedule_option` come as an object (docs) or a list (SDK), `phone` and account numbers as
  numbers or strings. Both are read.
- Account numbers, VPAs, phones, KYC numbers and customers' bank details never appear in a
  repr (as `payout_models.py`): `masked` gives the last four where a log must name one.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any

from pydantic import AliasChoices, BeforeValidator, Field

from commdesk_billing.gateway.models import Paise, Status, TextId, _Tolerant
from commdesk_billing.gateway.payout_models import mask
from commdesk_billing.security.timestamps import CashfreeTime

# --- what we send ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SplitShare:
    """One `order_splits` entry: a vendor's share as exact paise or as a percentage (two
    decimals at most; Cashfree rounds it, so prefer paise). The rest stays the merchant's."""

    vendor_id: str
    amount_paise: int | None = None
    percentage: Decimal | None = None
    tags: dict[str, str] | None = None

    def __post_init__(self) -> None:
        if (self.amount_paise is None) == (self.percentage is None):
            raise ValueError("a split share has exactly one of amount_paise and percentage")
        if self.amount_paise is not None and self.amount_paise <= 0:
            raise ValueError("a split share's amount must be positive")
        if self.percentage is not None and not (
            0 < self.percentage <= 100
            and self.percentage == self.percentage.quantize(Decimal("0.01"))
        ):
            raise ValueError("a split percentage is 0 < p <= 100 with two decimals at most")


@dataclass(frozen=True, slots=True)
class RefundShare:
    """One `refund_splits` entry: what a vendor gives back of a refund, in paise."""

    vendor_id: str
    amount_paise: int

    def __post_init__(self) -> None:
        if self.amount_paise < 0:
            raise ValueError("a refund share cannot be negative")


# --- vendors -------------------------------------------------------------------------------


def _first(value: Any) -> Any:
    """The SDK's one-element lists and the docs' objects, read alike."""
    if isinstance(value, list):
        return value[0] if value else None
    return value


class VendorBank(_Tolerant):
    account_number: TextId | None = Field(default=None, repr=False)
    account_holder: str | None = None
    ifsc: str | None = None

    @property
    def masked(self) -> str | None:
        return mask(self.account_number)


class VendorUpi(_Tolerant):
    vpa: str | None = Field(default=None, repr=False)
    account_holder: str | None = None


class VendorSchedule(_Tolerant):
    schedule_id: int | None = None
    settlement_schedule_message: str | None = None
    merchant_default: bool | None = None


class VendorStatus:
    IN_BENE_CREATION = "IN_BENE_CREATION"
    ACTIVE = "ACTIVE"
    BLOCKED = "BLOCKED"
    DELETED = "DELETED"


class Vendor(_Tolerant):
    """A vendor as create, update (docs' shape) or fetch (`VendorEntity`) answers it."""

    vendor_id: TextId
    status: Status
    name: str | None = None
    email: str | None = Field(default=None, repr=False)
    phone: TextId | None = Field(default=None, repr=False)
    bank: Annotated[VendorBank | None, BeforeValidator(_first)] = None
    upi: Annotated[VendorUpi | None, BeforeValidator(_first)] = None
    schedule_option: Annotated[VendorSchedule | None, BeforeValidator(_first)] = None
    kyc_details: Annotated[dict[str, Any] | None, BeforeValidator(_first)] = Field(
        default=None, repr=False
    )
    dashboard_access: bool | None = None
    added_on: CashfreeTime = None
    updated_on: CashfreeTime = None
    remarks: str | None = None
    account_type: str | None = None
    business_type: str | None = None

    @property
    def active(self) -> bool:
        return self.status == VendorStatus.ACTIVE


class VendorBalance(_Tolerant):
    merchant_id: TextId | None = None
    vendor_id: TextId
    # Negative when a refund took back more than the vendor had unsettled (§14.3).
    merchant_unsettled_paise: Paise | None = Field(default=None, alias="merchant_unsettled")
    vendor_unsettled_paise: Paise = Field(alias="vendor_unsettled")


# --- vendor settlement webhooks -------------------------------------------------------------


class VendorSettlementEvent:
    CREATED = "VENDOR_SETTLEMENT_CREATED"  # §14.5's sample
    INITIATED = "VENDOR_SETTLEMENT_INITIATED"  # §14.5's table: read as CREATED
    SUCCESS = "VENDOR_SETTLEMENT_SUCCESS"
    FAILED = "VENDOR_SETTLEMENT_FAILED"
    REVERSED = "VENDOR_SETTLEMENT_REVERSED"
    ALL = frozenset({CREATED, INITIATED, SUCCESS, FAILED, REVERSED})


class VendorSettlement(_Tolerant):
    settlement_id: TextId
    vendor_id: TextId
    status: Status
    utr: TextId | None = None
    # The string "null" until settled (§14.5): read as None.
    settled_on: CashfreeTime = None
    settlement_initiated_on: CashfreeTime = None
    reason: str | None = None
    vendor_transaction_amount_paise: Paise | None = Field(
        default=None, alias="vendor_transaction_amount"
    )
    adjustment_paise: Paise | None = Field(default=None, alias="adjustment")
    settlement_amount_paise: Paise = Field(alias="settlement_amount")
    amount_settled_paise: Paise | None = Field(default=None, alias="amount_settled")
    service_charge_paise: Paise | None = Field(default=None, alias="service_charge")
    service_tax_paise: Paise | None = Field(default=None, alias="service_tax")
    payment_from: str | None = None
    payment_till: str | None = None
    account_mode: str | None = None
    settled_orders_count: int | None = None
    account_number: TextId | None = Field(default=None, repr=False)
    ifsc: str | None = None
    vpa: str | None = Field(default=None, repr=False)


class VendorSettlementData(_Tolerant):
    settlement: VendorSettlement


class VendorSettlementWebhook(_Tolerant):
    type: Status
    event_time: CashfreeTime = None
    data: VendorSettlementData

    @property
    def settlement(self) -> VendorSettlement:
        return self.data.settlement

    @property
    def event(self) -> str:
        """The event, `VENDOR_SETTLEMENT_INITIATED` read as `_CREATED` (the same step)."""
        if self.type == VendorSettlementEvent.INITIATED:
            return VendorSettlementEvent.CREATED
        return self.type


# --- split recon -----------------------------------------------------------------------------


class SplitReconVendor(_Tolerant):
    vendor_id: TextId
    settlement_id: TextId | None = None
    settlement_amount_paise: Paise | None = Field(default=None, alias="settlement_amount")
    settlement_eligibility_date: CashfreeTime = None


class SplitReconSettlement(_Tolerant):
    cf_settlement_id: TextId | None = None
    settlement_amount_paise: Paise | None = Field(default=None, alias="settlement_amount")
    settlement_utr: TextId | None = None


class SplitOrderRecon(_Tolerant):
    settlement: SplitReconSettlement | None = None
    refunds: list[dict[str, Any]] = Field(default_factory=list)
    vendors: list[SplitReconVendor] = Field(default_factory=list)


# --- settlement reports (§7) -----------------------------------------------------------------


class Settlement(_Tolerant):
    """A row of `POST /settlements`."""

    cf_settlement_id: TextId = Field(
        validation_alias=AliasChoices("cf_settlement_id", "settlement_id")
    )
    status: Status | None = None
    utr: TextId | None = None
    payment_amount_paise: Paise | None = Field(default=None, alias="payment_amount")
    adjustment_paise: Paise | None = Field(default=None, alias="adjustment")
    service_charge_paise: Paise | None = Field(default=None, alias="service_charge")
    service_tax_paise: Paise | None = Field(default=None, alias="service_tax")
    settlement_amount_paise: Paise = Field(alias="settlement_amount")
    amount_settled_paise: Paise | None = Field(default=None, alias="amount_settled")
    settlement_initiated_on: CashfreeTime = None
    settled_on: CashfreeTime = None
    payment_from: str | None = None
    payment_till: str | None = None


class OrderSettlement(_Tolerant):
    """`GET /orders/{order_id}/settlements` (SDK6 `SettlementEntity`)."""

    order_id: TextId | None = None
    cf_payment_id: TextId | None = None
    cf_settlement_id: TextId | None = None
    order_amount_paise: Paise | None = Field(default=None, alias="order_amount")
    service_charge_paise: Paise | None = Field(default=None, alias="service_charge")
    service_tax_paise: Paise | None = Field(default=None, alias="service_tax")
    settlement_amount_paise: Paise | None = Field(default=None, alias="settlement_amount")
    transfer_utr: TextId | None = None
    transfer_time: CashfreeTime = None


class ReconEvent(_Tolerant):
    event_id: TextId
    event_type: Status
    sale_type: Status  # CREDIT | DEBIT
    event_status: Status | None = None
    event_amount_paise: Paise = Field(alias="event_amount")
    event_settlement_amount_paise: Paise | None = Field(
        default=None, alias="event_settlement_amount"
    )
    event_service_charge_paise: Paise | None = Field(default=None, alias="event_service_charge")
    event_service_tax_paise: Paise | None = Field(default=None, alias="event_service_tax")
    event_time: CashfreeTime = None
    event_currency: str | None = None


class ReconOrder(_Tolerant):
    order_id: TextId
    order_amount_paise: Paise | None = Field(default=None, alias="order_amount")


class ReconPayment(_Tolerant):
    cf_payment_id: TextId | None = None
    payment_amount_paise: Paise | None = Field(default=None, alias="payment_amount")
    bank_reference: TextId | None = None
    # `payment_group` in /recon, `payment_mode` in /settlement/recon.
    payment_group: str | None = Field(
        default=None, validation_alias=AliasChoices("payment_group", "payment_mode")
    )


class ReconSettlement(_Tolerant):
    cf_settlement_id: TextId | None = None
    utr: TextId | None = None
    settlement_date: CashfreeTime = None
    vendor_commission_paise: Paise | None = Field(default=None, alias="vendor_commission")


class ReconRefund(_Tolerant):
    refund_id: TextId | None = None
    refund_arn: TextId | None = None


class ReconRow(_Tolerant):
    event_details: ReconEvent
    order_details: ReconOrder | None = None
    payment_details: ReconPayment | None = None
    settlement_details: ReconSettlement | None = None
    refund_details: ReconRefund | None = None
    # Customers' bank account numbers may be in here: kept out of any repr.
    customer_details: dict[str, Any] | None = Field(default=None, repr=False)

    @property
    def signed_settlement_paise(self) -> int:
        """The row's effect on its settlement: credits add, debits take away."""
        amount = self.event_details.event_settlement_amount_paise or 0
        return -amount if self.event_details.sale_type == "DEBIT" else amount


class SettlementPage(_Tolerant):
    cursor: str | None = None
    limit: int | None = None
    data: list[Settlement] = Field(default_factory=list)


class ReconPage(_Tolerant):
    cursor: str | None = None
    limit: int | None = None
    data: list[ReconRow] = Field(default_factory=list)
