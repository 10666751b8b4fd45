"""Subscriptions' run-time settings: the webhook endpoint and the pace of mandates and charges.

Started from `SandboxConfig` and changed with `PATCH /_sandbox/subscriptions/settings`.
Cashfree's counterpart of `webhook_url` is the dashboard's Subscriptions webhook URL; there is
no per-subscription notify URL.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from commdesk_billing.gateway.sandbox.config import SandboxConfig

Seconds = Annotated[float, Field(ge=0, le=30 * 86_400)]


class SubscriptionSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    webhook_url: str | None
    # A hosted authorisation link not approved within this becomes LINK_EXPIRED (unless the
    # subscription names its own `subscription_meta.session_id_expiry`).
    link_ttl_s: Annotated[float, Field(gt=0, le=365 * 86_400)]
    # A charge is debited no earlier than this after its pre-debit notification.
    pdn_lead_s: Seconds
    # UPI AutoPay retries a failed debit up to `upi_retries` times, this far apart.
    upi_retry_s: Seconds
    upi_retries: Annotated[int, Field(ge=0, le=10)] = 3
    # A PENDING refund of a charge ends (SUCCESS, or FAILED when its note says so) this long
    # after it was made, on the sandbox clock, as PG refunds do after `refund_delay_s`.
    refund_delay_s: Seconds = 5.0

    @field_validator("webhook_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @classmethod
    def from_config(cls, config: SandboxConfig) -> SubscriptionSettings:
        return cls(
            webhook_url=config.subscription_webhook_url or config.webhook_url,
            link_ttl_s=config.subscription_link_ttl_s,
            pdn_lead_s=config.subscription_pdn_lead_s,
            upi_retry_s=config.subscription_upi_retry_s,
            refund_delay_s=config.refund_delay_s,
        )
