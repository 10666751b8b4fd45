"""Easy Split and settlement knobs, changeable at run time (`PATCH /_sandbox/easy-split`).

Times are on the sandbox clock (`/_sandbox/clock` moves them); the counters are faults that
count down as new vendor settlements take them.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Seconds = Annotated[float, Field(ge=0, le=365 * 86_400)]


class SplitSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # A new vendor (or one whose bank or UPI changed) is IN_BENE_CREATION this long.
    kyc_s: Seconds = 60.0
    # A vendor's unsettled balance is settled once its oldest unsettled credit is this old
    # (T+1: a day); the settlement is CREATED, then SUCCESS after `vendor_step_s`.
    vendor_settlement_s: Seconds = 86_400.0
    vendor_step_s: Seconds = 2.0
    # Captured payments and refunds go into a merchant settlement once this old (T+1).
    merchant_settlement_s: Seconds = 86_400.0
    # Cashfree's charge on a captured payment, in basis points, and GST on it (18%); both
    # rounded down to the paisa, as §5.6's sample (1.75 on 100.00, tax 0.31).
    service_charge_bps: Annotated[int, Field(ge=0, le=10_000)] = 175
    # The first vendor webhook's type: §14.5's sample says CREATED, its table INITIATED.
    initiated_event: Literal["VENDOR_SETTLEMENT_CREATED", "VENDOR_SETTLEMENT_INITIATED"] = (
        "VENDOR_SETTLEMENT_CREATED"
    )
    # Where VENDOR_SETTLEMENT_* webhooks go (the dashboard's settlement webhook URL), besides
    # the sandbox-wide `webhook_url`.
    webhook_url: str | None = None
    # Faults: the next N vendor settlements end FAILED, or SUCCESS then REVERSED.
    fail_vendor_settlements: Annotated[int, Field(ge=0, le=100_000)] = 0
    reverse_vendor_settlements: Annotated[int, Field(ge=0, le=100_000)] = 0
    failure_reason: Annotated[str, Field(min_length=1, max_length=200)] = (
        "Beneficiary bank account is closed"
    )

    @field_validator("webhook_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value
