"""Reading a subscription webhook (cashfree.md §12.8): its signature over the exact bytes (the
PG scheme, §5.2, with the PG client secret), then its body as a typed `SubscriptionWebhook`,
or a `Refused` that says why not.

Two families of payload:

- status events (`SUBSCRIPTION_STATUS_CHANGED`, spelled `SUBSCRIPTION_STATUS_CHANGE` on
  webhook version 2023-08-01): `data.subscription_details` with `customer_details`,
  `plan_details` and `authorization_details` beside it;
- payment events (`SUBSCRIPTION_AUTH_STATUS`, `SUBSCRIPTION_PAYMENT_*`): `data` is the payment
  object (`SubscriptionPaymentEntity`'s fields). Its exact field set is UNCONFIRMED (§16), so
  every field is optional and `subscription_id` is read from either shape.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from pydantic import AliasChoices, BeforeValidator, Field

from commdesk_billing.gateway import signature
from commdesk_billing.gateway.models import Paise, TextId
from commdesk_billing.gateway.signature import Refused
from commdesk_billing.gateway.subscription_models import (
    AuthorizationDetails,
    FailureDetails,
    Plan,
    SubscriptionCustomer,
    SubsStatus,
    SubsTime,
    _Subs,
)

__all__ = [
    "Refused",
    "SubscriptionDetails",
    "SubscriptionEvent",
    "SubscriptionWebhook",
    "SubscriptionWebhookData",
    "parse_subscription_webhook",
    "read_subscription_webhook",
]

MAX_AGE_S = 86_400.0
MAX_FUTURE_S = 300.0


class SubscriptionEvent:
    STATUS_CHANGED = "SUBSCRIPTION_STATUS_CHANGED"
    AUTH_STATUS = "SUBSCRIPTION_AUTH_STATUS"
    PAYMENT_NOTIFICATION_INITIATED = "SUBSCRIPTION_PAYMENT_NOTIFICATION_INITIATED"
    PAYMENT_SUCCESS = "SUBSCRIPTION_PAYMENT_SUCCESS"
    PAYMENT_FAILED = "SUBSCRIPTION_PAYMENT_FAILED"
    PAYMENT_CANCELLED = "SUBSCRIPTION_PAYMENT_CANCELLED"
    REFUND_STATUS = "SUBSCRIPTION_REFUND_STATUS"
    CARD_EXPIRY_REMINDER = "SUBSCRIPTION_CARD_EXPIRY_REMINDER"
    PAYMENT_EVENTS = frozenset(
        {
            AUTH_STATUS,
            PAYMENT_NOTIFICATION_INITIATED,
            PAYMENT_SUCCESS,
            PAYMENT_FAILED,
            PAYMENT_CANCELLED,
        }
    )
    ALL = PAYMENT_EVENTS | {STATUS_CHANGED, REFUND_STATUS, CARD_EXPIRY_REMINDER}


# Webhook version 2023-08-01 drops the D (§12.8).
_SPELLINGS = {"SUBSCRIPTION_STATUS_CHANGE": SubscriptionEvent.STATUS_CHANGED}


def _event_type(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    upper = value.upper()
    return _SPELLINGS.get(upper, upper)


class SubscriptionDetails(_Subs):
    cf_subscription_id: TextId | None = None
    subscription_id: TextId | None = None
    subscription_status: SubsStatus | None = None
    subscription_expiry_time: SubsTime = None
    subscription_first_charge_time: SubsTime = None
    next_schedule_date: SubsTime = None
    subscription_tags: dict[str, Any] | None = None


class SubscriptionWebhookData(_Subs):
    # Status events.
    subscription_details: SubscriptionDetails | None = None
    customer_details: SubscriptionCustomer | None = None
    plan_details: Plan | None = None
    authorization_details: AuthorizationDetails | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "authorization_details", "authorisation_details", "authorizationDetails"
        ),
    )
    # Payment events: the payment object's fields.
    payment_id: TextId | None = None
    cf_payment_id: TextId | None = None
    subscription_id: TextId | None = None
    cf_subscription_id: TextId | None = None
    cf_txn_id: TextId | None = None
    payment_type: SubsStatus | None = None
    payment_status: SubsStatus | None = None
    payment_amount_paise: Paise | None = Field(default=None, alias="payment_amount")
    payment_initiated_date: SubsTime = None
    payment_schedule_date: SubsTime = None
    payment_remarks: str | None = None
    retry_attempts: int | None = None
    failure_details: FailureDetails | None = None
    # Refund events (`SUBSCRIPTION_REFUND_STATUS`): the refund object's fields beside the
    # payment's ids (`SubscriptionPaymentRefundEntity`; the payload is UNCONFIRMED, §12.8).
    refund_id: TextId | None = None
    cf_refund_id: TextId | None = None
    refund_status: SubsStatus | None = None


class SubscriptionWebhook(_Subs):
    type: Annotated[str, BeforeValidator(_event_type)]
    event_time: SubsTime = None
    data: SubscriptionWebhookData

    @property
    def subscription_id(self) -> str | None:
        details = self.data.subscription_details
        if details is not None and details.subscription_id:
            return details.subscription_id
        return self.data.subscription_id

    @property
    def subscription_status(self) -> str | None:
        details = self.data.subscription_details
        return details.subscription_status if details is not None else None

    @property
    def authorization(self) -> AuthorizationDetails | None:
        return self.data.authorization_details

    @property
    def is_payment_event(self) -> bool:
        return self.type in SubscriptionEvent.PAYMENT_EVENTS

    @property
    def is_refund_event(self) -> bool:
        return self.type == SubscriptionEvent.REFUND_STATUS


def parse_subscription_webhook(payload: Mapping[str, Any]) -> SubscriptionWebhook:
    """A verified, already-decoded body (amounts as Decimal) as a typed event; ValueError
    (pydantic's ValidationError) when it has no `type` or `data`."""
    return SubscriptionWebhook.model_validate(dict(payload))


def read_subscription_webhook(
    body: bytes,
    headers: Mapping[str, str],
    secrets: Sequence[str],
    *,
    max_age_s: float = MAX_AGE_S,
    max_future_s: float = MAX_FUTURE_S,
    now_s: float | None = None,
) -> SubscriptionWebhook:
    """`secrets`: the PG client secret first, then any being rotated out. `headers` with
    lower-case names. A signed body of another family is refused (`webhook_unexpected`)."""
    hook = signature.read_signed(
        SubscriptionWebhook,
        body,
        headers,
        secrets,
        max_age_s=max_age_s,
        max_future_s=max_future_s,
        now_s=now_s,
    )
    if hook.type not in SubscriptionEvent.ALL:
        raise Refused("webhook_unexpected", f"not a subscription webhook: {hook.type[:60]}")
    return hook
