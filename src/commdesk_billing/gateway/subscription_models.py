"""Tolerant models of Cashfree Subscriptions (cashfree.md §12): plans, subscriptions (mandates),
their payments (the authorisation and each charge), and what we send to create them.

The rules of `models.py` (unknown fields ignored, statuses plain upper-case strings, ids as
text, exact paise, odd times None), plus the drift §12 documents:

- `INITIALISED` (older docs) is read as `INITIALIZED`;
- `""` stands for null in Cashfree's samples: every empty string is read as None;
- times come with an offset, without one (Indian time), with a space for the `T`, and with an
  offset without its colon (`+0530`): all are read;
- `payment_method` comes as a bare string (`"upi"`, `"NPCI_SBC"`) or as an object keyed by the
  method (`{"upi": {...}}`): `payment_method` is the name, `payment_method_details` the object;
- the subscription names its mandate `authorisation_details` (British) and the webhooks
  `authorization_details`, in snake_case (2025-01-01) or camelCase (2023-08-01): all are read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AliasChoices, BeforeValidator, Field, model_validator

from commdesk_billing.gateway.models import Paise, TextId, _Tolerant
from commdesk_billing.security.timestamps import CashfreeTime


class PlanType:
    PERIODIC = "PERIODIC"
    ON_DEMAND = "ON_DEMAND"


class SubscriptionStatus:
    INITIALIZED = "INITIALIZED"
    BANK_APPROVAL_PENDING = "BANK_APPROVAL_PENDING"
    ACTIVE = "ACTIVE"
    ON_HOLD = "ON_HOLD"
    PAUSED = "PAUSED"
    CUSTOMER_PAUSED = "CUSTOMER_PAUSED"
    CUSTOMER_CANCELLED = "CUSTOMER_CANCELLED"
    CANCELLED = "CANCELLED"
    COMPLETED = "COMPLETED"
    EXPIRED = "EXPIRED"
    LINK_EXPIRED = "LINK_EXPIRED"
    CARD_EXPIRED = "CARD_EXPIRED"
    # No way back from these: a new mandate is a new subscription.
    TERMINAL = frozenset(
        {CUSTOMER_CANCELLED, CANCELLED, COMPLETED, EXPIRED, LINK_EXPIRED, CARD_EXPIRED}
    )


class AuthorizationStatus:
    INITIALIZED = "INITIALIZED"
    PENDING = "PENDING"
    ACTIVE = "ACTIVE"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    # Both spellings of "the payer approved" occur (§12.4).
    APPROVED = frozenset({ACTIVE, SUCCESS})


class SubscriptionPaymentStatus:
    INITIALIZED = "INITIALIZED"
    PENDING = "PENDING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TERMINAL = frozenset({SUCCESS, FAILED, CANCELLED})


class SubscriptionPaymentType:
    AUTH = "AUTH"
    CHARGE = "CHARGE"


class SubscriptionAction:
    """`POST /subscriptions/{id}/manage` actions."""

    CANCEL = "CANCEL"
    PAUSE = "PAUSE"
    ACTIVATE = "ACTIVATE"
    CHANGE_PLAN = "CHANGE_PLAN"


class PaymentAction:
    """`POST /subscriptions/{id}/payments/{payment_id}/manage` actions."""

    CANCEL = "CANCEL"
    RETRY = "RETRY"


def _status(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    upper = value.upper()
    return "INITIALIZED" if upper == "INITIALISED" else upper


_COLONLESS_OFFSET = re.compile(r"([+-]\d{2})(\d{2})$")


def _time_text(value: Any) -> Any:
    """`2024-01-14 23:00:08+05:30`, `2024-04-18T22:14:58+0530` -> ISO 8601 with a `T`."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if len(text) > 10 and text[10] == " ":
        text = text[:10] + "T" + text[11:]
    if len(text) > 19:
        text = _COLONLESS_OFFSET.sub(r"\1:\2", text)
    return text


SubsStatus = Annotated[str, BeforeValidator(_status)]
SubsTime = Annotated[CashfreeTime, BeforeValidator(_time_text)]


def _blank_to_none(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: (None if v == "" else v) for k, v in data.items()}
    return data


def _text_or_none(value: Any) -> Any:
    return value if isinstance(value, str) else None


class _Subs(_Tolerant):
    @model_validator(mode="before")
    @classmethod
    def _blanks(cls, data: Any) -> Any:
        return _blank_to_none(data)


def _split_method(data: Any) -> Any:
    """`payment_method` as a name plus, when Cashfree sent an object, its details."""
    if not isinstance(data, dict):
        return data
    key = next((k for k in ("payment_method", "paymentMethod") if k in data), None)
    if key is None:
        return data
    method = data[key]
    out = {k: v for k, v in data.items() if k != key}
    if isinstance(method, dict):
        out["payment_method_details"] = method
        out["payment_method"] = next(iter(method), None)
    elif isinstance(method, str):
        out["payment_method"] = method
    return out


class Plan(_Subs):
    plan_id: TextId | None = None
    plan_name: str | None = None
    plan_type: SubsStatus | None = None
    plan_currency: str | None = None
    plan_recurring_amount_paise: Paise | None = Field(
        default=None,
        validation_alias=AliasChoices("plan_recurring_amount", "plan_amount"),
    )
    plan_max_amount_paise: Paise | None = Field(default=None, alias="plan_max_amount")
    plan_max_cycles: int | None = None
    plan_intervals: int | None = None
    plan_interval_type: SubsStatus | None = None
    plan_note: str | None = None
    plan_status: SubsStatus | None = None


class SubscriptionCustomer(_Subs):
    customer_name: str | None = None
    customer_email: str | None = None
    customer_phone: TextId | None = None


class AuthorizationDetails(_Subs):
    """The mandate: its status, and once approved its reference (UMN for UPI AutoPay, UMRN
    for NACH, an enrolment id for cards)."""

    authorization_amount_paise: Paise | None = Field(
        default=None,
        validation_alias=AliasChoices("authorization_amount", "authorizationAmount"),
    )
    authorization_amount_refund: bool | None = Field(
        default=None,
        validation_alias=AliasChoices("authorization_amount_refund", "authorizationAmountRefund"),
    )
    authorization_reference: TextId | None = Field(
        default=None,
        validation_alias=AliasChoices("authorization_reference", "authorizationReference"),
    )
    authorization_time: SubsTime = Field(
        default=None, validation_alias=AliasChoices("authorization_time", "authorizationTime")
    )
    authorization_status: SubsStatus | None = Field(
        default=None,
        validation_alias=AliasChoices("authorization_status", "authorizationStatus"),
    )
    approve_by_time: SubsTime = Field(
        default=None, validation_alias=AliasChoices("approve_by_time", "approveByTime")
    )
    payment_id: TextId | None = Field(
        default=None, validation_alias=AliasChoices("payment_id", "paymentId")
    )
    payment_group: str | None = Field(
        default=None, validation_alias=AliasChoices("payment_group", "paymentGroup")
    )
    payment_method: str | None = None
    payment_method_details: dict[str, Any] | None = None
    instrument_id: TextId | None = Field(
        default=None, validation_alias=AliasChoices("instrument_id", "instrumentId")
    )

    @model_validator(mode="before")
    @classmethod
    def _method(cls, data: Any) -> Any:
        return _split_method(_blank_to_none(data))

    @property
    def approved(self) -> bool:
        return self.authorization_status in AuthorizationStatus.APPROVED


class Subscription(_Subs):
    cf_subscription_id: TextId | None = None
    subscription_id: TextId
    subscription_status: SubsStatus
    subscription_session_id: str | None = None
    authorization_details: AuthorizationDetails | None = Field(
        default=None,
        validation_alias=AliasChoices("authorisation_details", "authorization_details"),
    )
    customer_details: SubscriptionCustomer | None = None
    plan_details: Plan | None = None
    subscription_expiry_time: SubsTime = None
    subscription_first_charge_time: SubsTime = None
    subscription_meta: dict[str, Any] | None = None
    subscription_note: str | None = None
    subscription_tags: dict[str, Any] | None = None
    next_schedule_date: SubsTime = None


class FailureDetails(_Subs):
    failure_reason: str | None = None


class AuthLink(_Subs):
    """`data` of an AUTH answer: where to send the payer (hosted/app link)."""

    url: str | None = None
    payload: Any = None
    content_type: str | None = None
    method: str | None = None


class SubscriptionPayment(_Subs):
    """The answer of `POST /subscriptions/pay` and a `SubscriptionPaymentEntity` (GET/manage):
    an authorisation (`payment_type` AUTH) or a charge (CHARGE)."""

    cf_payment_id: TextId | None = None
    payment_id: TextId
    subscription_id: TextId | None = None
    cf_subscription_id: TextId | None = None
    cf_txn_id: TextId | None = None
    cf_order_id: TextId | None = None
    payment_type: SubsStatus | None = None
    payment_status: SubsStatus
    payment_amount_paise: Paise | None = Field(default=None, alias="payment_amount")
    payment_initiated_date: SubsTime = None
    payment_schedule_date: SubsTime = None
    payment_remarks: str | None = None
    payment_method: str | None = None
    payment_method_details: dict[str, Any] | None = None
    retry_attempts: int | None = None
    failure_details: FailureDetails | None = None
    authorization_details: AuthorizationDetails | None = Field(
        default=None,
        validation_alias=AliasChoices("authorization_details", "authorisation_details"),
    )
    data: AuthLink | None = None

    @model_validator(mode="before")
    @classmethod
    def _method(cls, data: Any) -> Any:
        return _split_method(_blank_to_none(data))

    @property
    def failure_reason(self) -> str | None:
        return self.failure_details.failure_reason if self.failure_details else None


class SubscriptionRefundStatus:
    """A subscription refund's statuses: the SDK lists INITIALIZED, SUCCESS, CANCEL, PENDING,
    FAILED and the OpenAPI example says INITIATED (§12.4); every one is read."""

    SUCCESS = "SUCCESS"
    PENDING = "PENDING"
    INITIALIZED = "INITIALIZED"
    INITIATED = "INITIATED"
    FAILED = "FAILED"
    CANCEL = "CANCEL"
    CANCELLED = "CANCELLED"
    # Not yet ended: Cashfree has the refund and is working on it.
    OPEN = frozenset({PENDING, INITIALIZED, INITIATED})
    # Ended without money going out.
    NOT_MADE = frozenset({FAILED, CANCEL, CANCELLED})


class SubscriptionRefund(_Subs):
    """`SubscriptionPaymentRefundEntity` (§12.1): the answer of create and fetch, and the
    `data` of `SUBSCRIPTION_REFUND_STATUS` (with the subscription's ids beside it)."""

    payment_id: TextId | None = None
    cf_payment_id: TextId | None = None
    refund_id: TextId
    cf_refund_id: TextId | None = None
    refund_amount_paise: Paise = Field(alias="refund_amount")
    refund_note: str | None = None
    # A string (INSTANT, STANDARD or NORMAL per the SDK); anything else is not kept.
    refund_speed: Annotated[str | None, BeforeValidator(_text_or_none)] = None
    refund_status: SubsStatus
    subscription_id: TextId | None = None
    cf_subscription_id: TextId | None = None


# --- what we send ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlanSpec:
    """A plan given inline at subscription create (its amount field is `plan_amount` there,
    `plan_recurring_amount` on the plan API). ON_DEMAND needs only name and max amount."""

    plan_name: str
    max_amount_paise: int
    plan_type: str = PlanType.ON_DEMAND
    recurring_amount_paise: int | None = None
    max_cycles: int | None = None
    intervals: int | None = None
    interval_type: str | None = None
    note: str | None = None

    def __post_init__(self) -> None:
        if self.max_amount_paise <= 0:
            raise ValueError("a plan's max amount must be positive")
        if self.plan_type not in (PlanType.PERIODIC, PlanType.ON_DEMAND):
            raise ValueError("plan_type is PERIODIC or ON_DEMAND")
