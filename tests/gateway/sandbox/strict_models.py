"""Strict models of Cashfree's wire shapes (cashfree.md §2-§5, §8), for checking the sandbox.

Kept apart from any client on purpose: a client parses tolerantly, these refuse anything the
document does not show. `extra="forbid"` where the document's field list is complete, exact
enums, ids as digit strings, IST timestamps, and amounts that must be JSON numbers written with
two decimals (bodies are parsed with `parse_float=Decimal`, so `300.00` keeps its exponent and
`300` arrives as an int, which strict Decimal fields refuse).
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Annotated, Any, Literal, Self, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    StringConstraints,
    TypeAdapter,
    model_validator,
)


def _two_decimals(value: Decimal) -> Decimal:
    if value.as_tuple().exponent != -2:
        raise ValueError(f"amount {value} is not written with exactly two decimals")
    return value


Amount = Annotated[Decimal, AfterValidator(_two_decimals)]
Timestamp = Annotated[str, StringConstraints(pattern=r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+05:30$")]
CfId = Annotated[str, StringConstraints(pattern=r"^[0-9]+$")]
SessionId = Annotated[str, StringConstraints(pattern=r"^session_[A-Za-z0-9]+$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ErrorBody(Strict):
    message: str
    code: str
    type: Literal[
        "invalid_request_error",
        "authentication_error",
        "idempotency_error",
        "rate_limit_error",
        "api_error",
    ]
    help: str | None = None


class CustomerDetails(Strict):
    customer_id: str | None
    customer_name: str | None
    customer_email: str | None
    customer_phone: str | None
    customer_uid: str | None
    customer_bank_account_number: str | None
    customer_bank_ifsc: str | None
    customer_bank_code: int | None


class OrderMeta(Strict):
    return_url: str | None
    notify_url: str | None
    payment_methods: str | None


OrderStatus = Literal["ACTIVE", "PAID", "EXPIRED", "TERMINATED", "TERMINATION_REQUESTED"]


class OrderEntity(Strict):
    cf_order_id: CfId
    created_at: Timestamp
    customer_details: CustomerDetails
    entity: Literal["order"]
    order_amount: Amount
    order_currency: str
    order_expiry_time: Timestamp
    order_id: str
    order_meta: OrderMeta
    order_note: str | None
    order_splits: list[dict[str, Any]]
    order_status: OrderStatus
    order_tags: dict[str, str] | None
    payment_session_id: SessionId
    cart_details: dict[str, Any] | None
    terminal_data: dict[str, Any] | None


class ErrorDetails(Strict):
    error_code: str
    error_description: str
    error_reason: str
    error_source: str
    error_code_raw: str | None
    error_description_raw: str | None


class Upi(Strict):
    channel: Literal["collect", "link", "qrcode", "podQrCode"]
    upi_id: str | None
    upi_payer_ifsc: str | None = None
    upi_payer_account_number: str | None = None


class Card(Strict):
    channel: Literal["link", "post"]
    card_number: Annotated[str, StringConstraints(pattern=r"^\d{6}X{6}\d{4}$")]
    card_network: Literal["visa", "mastercard", "rupay", "amex", "diners"]
    card_type: Literal["credit_card", "debit_card", "prepaid_card"]
    card_sub_type: Literal["R", "P", "C"]
    card_country: str
    card_bank_name: str
    card_network_reference_id: str | None
    instrument_id: str | None


class Netbanking(Strict):
    channel: str | None
    netbanking_bank_code: int  # an int: the SDK refuses a string here
    netbanking_bank_name: str
    netbanking_ifsc: str | None
    netbanking_account_number: str | None


class App(Strict):  # cashfree.md §3.1: {"app": {"channel", "provider", "phone"}}
    channel: str | None
    provider: str | None
    phone: str | None


class UpiMethod(Strict):
    upi: Upi


class CardMethod(Strict):
    card: Card


class NetbankingMethod(Strict):
    netbanking: Netbanking


class AppMethod(Strict):
    app: App


PaymentMethod = UpiMethod | CardMethod | NetbankingMethod | AppMethod
PaymentStatus = Literal[
    "SUCCESS", "NOT_ATTEMPTED", "FAILED", "USER_DROPPED", "VOID", "CANCELLED", "PENDING"
]
PaymentGroup = Literal[
    "prepaid_card", "upi_ppi_offline", "cash", "upi_credit_card", "paypal", "net_banking",
    "cardless_emi", "credit_card", "bank_transfer", "pay_later", "debit_card_emi",
    "debit_card", "wallet", "upi_ppi", "upi", "credit_card_emi",
]  # fmt: skip


class GatewayDetails(Strict):
    gateway_name: str | None
    gateway_order_id: str | None
    gateway_payment_id: str | None
    gateway_order_reference_id: str | None
    gateway_settlement: str | None
    gateway_status_code: str | None
    gateway_reference_name: str | None


class International(Strict):
    international: bool


class PaymentEntity(Strict):
    auth_id: str | None
    authorization: dict[str, Any] | None
    bank_reference: str | None
    cf_payment_id: CfId
    entity: Literal["payment"]
    error_details: ErrorDetails | None
    international_payment: International
    is_captured: bool
    order_amount: Amount
    order_currency: str
    order_id: str
    payment_amount: Amount
    payment_completion_time: Timestamp | None
    payment_currency: str
    payment_gateway_details: GatewayDetails
    payment_group: PaymentGroup
    payment_message: str
    payment_method: PaymentMethod
    payment_status: PaymentStatus
    payment_surcharge: dict[str, Any] | None
    payment_time: Timestamp

    @model_validator(mode="after")
    def _failures_explained(self) -> Self:
        failed = self.payment_status in ("FAILED", "USER_DROPPED")
        if failed != (self.error_details is not None):
            raise ValueError("error_details must be present exactly on failed payments")
        return self


class PayOrderData(Strict):
    url: str | None
    payload: dict[str, str] | None
    content_type: str | None
    method: str | None
    redirect_to_bank: bool | None


class PayOrderEntity(Strict):
    action: Literal["link", "post", "custom", "form"]
    cf_payment_id: CfId
    channel: Literal["link", "post", "collect", "qrcode", "podQrCode"]
    data: PayOrderData
    payment_amount: Amount
    payment_method: Literal[
        "netbanking", "card", "upi", "app", "cardless_emi", "paylater", "banktransfer", "applepay"
    ]


class RefundSpeed(Strict):
    requested: str | None
    accepted: str | None
    processed: str | None
    message: str | None


# The SDK's validator set (FAILED is refused by SDK 6, so the sandbox must never send it).
RefundStatus = Literal["SUCCESS", "PENDING", "CANCELLED", "ONHOLD"]


class RefundEntity(Strict):
    cf_payment_id: CfId
    cf_refund_id: CfId
    created_at: Timestamp
    entity: Literal["refund"]
    metadata: dict[str, Any] | None
    order_id: str
    processed_at: Timestamp | None
    refund_amount: Amount
    refund_arn: str | None
    refund_charge: Amount
    refund_currency: str
    refund_id: str
    refund_mode: str | None
    refund_note: str | None
    refund_speed: RefundSpeed
    refund_splits: list[dict[str, Any]]
    refund_status: RefundStatus
    refund_type: Literal["PAYMENT_AUTO_REFUND", "MERCHANT_INITIATED", "UNRECONCILED_AUTO_REFUND"]
    status_description: str


class EntitySimulation(Strict):
    payment_status: Literal["SUCCESS", "FAILED", "PENDING", "USER_DROPPED"]
    payment_error_code: str | None


class SimulationResponse(Strict):
    simulation_id: str
    entity: Literal["PAYMENTS"]
    entity_id: CfId
    entity_simulation: EntitySimulation


# Webhooks (§5.4, §5.5) ----------------------------------------------------------------


class WebhookOrder(Strict):
    order_id: str
    order_amount: Amount
    order_currency: str
    order_tags: dict[str, str] | None


class WebhookPayment(Strict):
    cf_payment_id: CfId
    payment_status: Literal["SUCCESS", "FAILED", "USER_DROPPED"]
    payment_amount: Amount
    payment_currency: str
    payment_message: str
    payment_time: Timestamp
    bank_reference: str | None
    auth_id: str | None
    payment_method: PaymentMethod
    payment_group: PaymentGroup
    international_payment: International
    payment_surcharge: dict[str, Any] | None


class WebhookCustomer(Strict):
    customer_name: str | None
    customer_id: str | None
    customer_email: str | None
    customer_phone: str | None


class PaymentWebhookData(Strict):
    order: WebhookOrder
    payment: WebhookPayment
    customer_details: WebhookCustomer
    error_details: ErrorDetails | None = None
    payment_gateway_details: GatewayDetails
    payment_offers: list[dict[str, Any]] | None


class PaymentWebhook(Strict):
    data: PaymentWebhookData
    event_time: Timestamp
    type: Literal[
        "PAYMENT_SUCCESS_WEBHOOK", "PAYMENT_FAILED_WEBHOOK", "PAYMENT_USER_DROPPED_WEBHOOK"
    ]

    @model_validator(mode="after")
    def _type_matches(self) -> Self:
        status = self.data.payment.payment_status
        if self.type != f"PAYMENT_{status}_WEBHOOK":
            raise ValueError(f"{self.type} carries a {status} payment")
        if (status != "SUCCESS") != (self.data.error_details is not None):
            raise ValueError("error_details must be present exactly on failed payments")
        return self


class WebhookRefund(Strict):
    cf_refund_id: CfId
    cf_payment_id: CfId
    refund_id: str
    order_id: str
    refund_amount: Amount
    refund_currency: str
    entity: Literal["Refund"]
    refund_type: Literal["MERCHANT_INITIATED", "PAYMENT_AUTO_REFUND", "UNRECONCILED_AUTO_REFUND"]
    refund_arn: str | None
    refund_status: Literal["SUCCESS", "CANCELLED"]
    status_description: str
    created_at: Timestamp
    processed_at: Timestamp | None
    refund_charge: Amount
    refund_note: str | None
    refund_splits: list[dict[str, Any]]
    metadata: dict[str, Any] | None
    refund_mode: str


class RefundWebhookData(Strict):
    refund: WebhookRefund


class RefundWebhook(Strict):
    data: RefundWebhookData
    event_time: Timestamp
    type: Literal["REFUND_STATUS_WEBHOOK"]


M = TypeVar("M")


def wire(raw: bytes) -> Any:
    return json.loads(raw, parse_float=Decimal)


def parse(shape: type[M], raw: bytes) -> M:
    """Validate raw response or webhook bytes against a model (or a `list[Model]`)."""
    return TypeAdapter(shape).validate_python(wire(raw))
