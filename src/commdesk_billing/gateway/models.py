"""Tolerant models of what Cashfree sends us (responses and webhooks).

Cashfree adds fields and enum values over time, and its own samples disagree on types (ids as
numbers or strings, `"auth_id": "null"`, bank codes as strings). On a payment path none of that
may raise: unknown fields are ignored, statuses stay plain strings (compared against the known
sets below), ids are normalised to strings, and amounts are parsed from exact decimals into
integer paise. The strict shapes the sandbox must emit live in its tests, not here.

Two things are still refused or bounded, because nothing downstream could hold them:

- text PostgreSQL cannot store (NUL, lone surrogates) anywhere in an answer, ignored fields
  included (the raw answer is kept as evidence too): the answer is unreadable
  (`CashfreeBadResponse`; the webhook receiver stores such a webhook as rejected);
- times outside [2000, 2100) UTC become None (`security/timestamps.py`): Cashfree's times
  only inform, and one odd time must not stall the payment it reports.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from pydantic import AliasChoices, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from commdesk_billing.gateway.amounts import to_paise
from commdesk_billing.security.text import refuse_unstorable
from commdesk_billing.security.timestamps import CashfreeTime


def _text_id(value: Any) -> Any:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int | Decimal):
        return str(value)
    return value


def _paise(value: Any) -> Any:
    return None if value is None else to_paise(value)


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


def _loose_decimal(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value))
    except ArithmeticError:
        return None
    return number if number.is_finite() else None


def _loose_paise(value: Any) -> int | None:
    number = _loose_decimal(value)
    if number is None:
        return None
    try:
        return to_paise(number)
    except ValueError:
        return None


def _dict_or_none(value: Any) -> Any:
    return value if isinstance(value, dict) else None


def _dicts(value: Any) -> Any:
    """A list of objects, anything else in it (or instead of it) left out."""
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else None


TextId = Annotated[str, BeforeValidator(_text_id)]
Paise = Annotated[int, BeforeValidator(_paise)]
Status = Annotated[str, BeforeValidator(_upper)]


class OrderStatus:
    ACTIVE = "ACTIVE"
    PAID = "PAID"
    EXPIRED = "EXPIRED"
    TERMINATED = "TERMINATED"
    TERMINATION_REQUESTED = "TERMINATION_REQUESTED"


class PaymentStatus:
    SUCCESS = "SUCCESS"
    NOT_ATTEMPTED = "NOT_ATTEMPTED"
    FAILED = "FAILED"
    USER_DROPPED = "USER_DROPPED"
    VOID = "VOID"
    CANCELLED = "CANCELLED"
    PENDING = "PENDING"
    TERMINAL = frozenset({SUCCESS, FAILED, USER_DROPPED, VOID, CANCELLED})


class _Tolerant(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any) -> Any:
        return refuse_unstorable(data)


class CustomerDetails(_Tolerant):
    customer_id: TextId | None = None
    customer_phone: TextId | None = None
    customer_email: str | None = None
    customer_name: str | None = None


class OrderMeta(_Tolerant):
    return_url: str | None = None
    notify_url: str | None = None
    payment_methods: str | None = None


class VendorSplit(_Tolerant):
    """An Easy Split share as Cashfree echoes it: on an order (`order_splits`), on a refund
    (`refund_splits`; the refund webhook names the vendor `merchantVendorId`, §5.5)."""

    # Optional and loosely typed: an echo only informs, and one odd entry must not make the
    # refund or order that carries it unreadable.
    vendor_id: TextId | None = Field(
        default=None, validation_alias=AliasChoices("vendor_id", "merchantVendorId")
    )
    amount_paise: Annotated[int | None, BeforeValidator(_loose_paise)] = Field(
        default=None, alias="amount"
    )
    percentage: Annotated[Decimal | None, BeforeValidator(_loose_decimal)] = None
    tags: Annotated[dict[str, Any] | None, BeforeValidator(_dict_or_none)] = None


class Order(_Tolerant):
    cf_order_id: TextId | None = None
    order_id: TextId
    order_amount_paise: Paise = Field(alias="order_amount")
    order_currency: str
    order_status: Status
    payment_session_id: str | None = None
    order_expiry_time: CashfreeTime = None
    created_at: CashfreeTime = None
    order_note: str | None = None
    order_tags: dict[str, Any] | None = None
    customer_details: CustomerDetails | None = None
    order_meta: OrderMeta | None = None
    order_splits: Annotated[list[VendorSplit] | None, BeforeValidator(_dicts)] = None


class ErrorDetails(_Tolerant):
    error_code: str | None = None
    error_description: str | None = None
    error_reason: str | None = None
    error_source: str | None = None


class Payment(_Tolerant):
    cf_payment_id: TextId
    order_id: TextId | None = None
    payment_status: Status
    payment_amount_paise: Paise | None = Field(default=None, alias="payment_amount")
    order_amount_paise: Paise | None = Field(default=None, alias="order_amount")
    payment_currency: str | None = None
    payment_message: str | None = None
    payment_time: CashfreeTime = None
    payment_completion_time: CashfreeTime = None
    bank_reference: TextId | None = None
    payment_group: str | None = None
    # One key (upi, card, netbanking, …) whose value describes the instrument; kept raw.
    payment_method: dict[str, Any] | None = None
    is_captured: bool | None = None
    error_details: ErrorDetails | None = None

    @property
    def method(self) -> str | None:
        if not self.payment_method:
            return None
        return next(iter(self.payment_method))


class Refund(_Tolerant):
    cf_refund_id: TextId | None = None
    cf_payment_id: TextId | None = None
    refund_id: TextId
    order_id: TextId | None = None
    refund_amount_paise: Paise = Field(alias="refund_amount")
    refund_currency: str | None = None
    refund_status: Status
    refund_arn: TextId | None = None
    refund_note: str | None = None
    status_description: str | None = None
    created_at: CashfreeTime = None
    processed_at: CashfreeTime = None
    refund_splits: Annotated[list[VendorSplit] | None, BeforeValidator(_dicts)] = None


class WebhookOrder(_Tolerant):
    order_id: TextId
    order_amount_paise: Paise | None = Field(default=None, alias="order_amount")
    order_currency: str | None = None


class WebhookPayment(_Tolerant):
    cf_payment_id: TextId
    payment_status: Status
    payment_amount_paise: Paise | None = Field(default=None, alias="payment_amount")
    payment_currency: str | None = None
    payment_group: str | None = None
    payment_method: dict[str, Any] | None = None


class PaymentWebhookData(_Tolerant):
    order: WebhookOrder
    payment: WebhookPayment


class WebhookRefundData(_Tolerant):
    refund: dict[str, Any]


class WebhookEnvelope(_Tolerant):
    type: str
    event_time: str | None = None
    data: dict[str, Any]
