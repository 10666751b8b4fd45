"""The Payouts side's run-time settings: its webhook endpoint and the pace of a transfer.

Started from `SandboxConfig` and changed with `PATCH /_sandbox/payout-settings`; Cashfree's
counterpart is the dashboard's Payouts webhook URL (there is no per-transfer notify URL).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from commdesk_billing.gateway.sandbox.config import SandboxConfig

Seconds = Annotated[float, Field(ge=0, le=30 * 86_400)]


class PayoutSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    webhook_url: str | None
    step_s: Seconds
    pending_s: Seconds
    reversal_s: Seconds
    slow_answer_s: Annotated[float, Field(ge=0, le=120)]

    @field_validator("webhook_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @classmethod
    def from_config(cls, config: SandboxConfig) -> PayoutSettings:
        return cls(
            webhook_url=config.payout_webhook_url,
            step_s=config.payout_step_s,
            pending_s=config.payout_pending_s,
            reversal_s=config.payout_reversal_s,
            slow_answer_s=config.payout_slow_answer_s,
        )
