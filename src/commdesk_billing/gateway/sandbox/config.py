"""Sandbox configuration: one validated settings object, read from the environment.

`BILLING_SANDBOX_*` variables set the sandbox's own knobs; the credentials it accepts are the
ones our service is configured with (`BILLING_CASHFREE_CLIENT_ID` / `_SECRET` for PG,
`BILLING_CASHFREE_PAYOUT_CLIENT_ID` / `_SECRET` for Payouts), so pointing the service at the
sandbox needs no second set of variables.
"""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from commdesk_billing.gateway.payout_codes import FAILURE_CODES
from commdesk_billing.gateway.sandbox.split.settings import SplitSettings

DEV_CLIENT_ID = "TEST_commdesk_sandbox"
DEV_CLIENT_SECRET = "cfsk_ma_test_commdesk_sandbox_secret"  # noqa: S105 - a local sandbox's default
# Payouts is another Cashfree app with its own pair (cashfree.md §6.2).
DEV_PAYOUT_CLIENT_ID = "TEST_commdesk_payouts"
DEV_PAYOUT_CLIENT_SECRET = "cfsk_ma_test_commdesk_payouts_secret"  # noqa: S105

RateProfile = Literal["sandbox", "production", "off"]

Rate = Annotated[float, Field(ge=0.0, le=1.0)]
Millis = Annotated[int, Field(ge=0, le=600_000)]


class Faults(BaseModel):
    """What the sandbox does wrong on purpose. Changeable at run time via `/_sandbox/faults`."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    latency_ms: Millis = 0
    # Share of API calls answered with Cashfree's 500 `api_error` before anything is done.
    error_rate: Rate = 0.0
    # Share of webhook events never sent at all (no attempt, no retry): the receiver must
    # fall back to polling the order.
    webhook_drop_rate: Rate = 0.0
    # Each webhook event is delivered this many times, concurrently (1 = once).
    webhook_duplicates: Annotated[int, Field(ge=1, le=20)] = 1
    # > 0: events are held for this long after the first one arrives, then sent newest first.
    webhook_reorder_window_ms: Millis = 0
    # > 0: each delivery first waits a random 0..jitter ms, so close events may swap places.
    webhook_jitter_ms: Millis = 0


Count = Annotated[int, Field(ge=0, le=100_000)]


def _failure_code(value: str) -> str:
    if value not in FAILURE_CODES:
        raise ValueError("must be one of " + ", ".join(sorted(FAILURE_CODES)))
    return value


class PayoutFaults(Faults):
    """Faults of the Payouts side (PG's set, then its own), apart from PG's so that one never
    disturbs the other. Changeable at run time via `/_sandbox/payout-faults`; the counters
    count down as new transfers take them. `error_rate` covers Payouts and verification."""

    # Every new transfer stays PENDING this much longer before its outcome.
    pending_extra_s: Annotated[float, Field(ge=0, le=30 * 86_400)] = 0.0
    # The next N new transfers end with `fail_status_code`: FAILED, or REJECTED for the
    # risk and configuration codes.
    fail_transfers: Count = 0
    fail_status_code: str = "BENE_BANK_DECLINED"
    # The next N new transfers that succeed are REVERSED `payout_reversal_s` after COMPLETED.
    reverse_transfers: Count = 0
    reverse_status_code: str = "INVALID_ACCOUNT_FAIL"

    @field_validator("fail_status_code", "reverse_status_code")
    @classmethod
    def _known_code(cls, value: str) -> str:
        return _failure_code(value)


def _split_floats(value: object) -> object:
    # "120,600,1800" from the environment or the command line; lists pass through.
    if isinstance(value, str):
        return tuple(float(part) for part in value.split(",") if part.strip())
    return value


class SandboxConfig(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="BILLING_SANDBOX_", extra="ignore", frozen=True, populate_by_name=True
    )

    client_id: Annotated[
        str,
        Field(
            min_length=1, validation_alias=AliasChoices("BILLING_CASHFREE_CLIENT_ID", "client_id")
        ),
    ] = DEV_CLIENT_ID
    client_secret: Annotated[
        str,
        Field(
            min_length=1,
            validation_alias=AliasChoices("BILLING_CASHFREE_CLIENT_SECRET", "client_secret"),
        ),
    ] = DEV_CLIENT_SECRET

    payout_client_id: Annotated[
        str,
        Field(
            min_length=1,
            validation_alias=AliasChoices("BILLING_CASHFREE_PAYOUT_CLIENT_ID", "payout_client_id"),
        ),
    ] = DEV_PAYOUT_CLIENT_ID
    payout_client_secret: Annotated[
        str,
        Field(
            min_length=1,
            validation_alias=AliasChoices(
                "BILLING_CASHFREE_PAYOUT_CLIENT_SECRET", "payout_client_secret"
            ),
        ),
    ] = DEV_PAYOUT_CLIENT_SECRET

    # Links the sandbox hands out (checkout pages, payment pages). None: taken from each
    # request's own Host, which is right unless the sandbox sits behind a proxy.
    public_url: str | None = None

    # UPI collect, card and netbanking payments settle this long after Order Pay.
    settle_delay_s: Annotated[float, Field(ge=0, le=3600)] = 1.0
    # A PENDING refund becomes SUCCESS (or CANCELLED) this long after it was created.
    refund_delay_s: Annotated[float, Field(ge=0, le=86_400)] = 5.0
    # Orders created without `order_expiry_time` expire this long after creation.
    default_order_ttl_s: Annotated[int, Field(ge=60, le=365 * 86_400)] = 30 * 86_400
    # How often the background sweep marks overdue orders EXPIRED (reads also do it lazily).
    expiry_sweep_s: Annotated[float, Field(gt=0, le=3600)] = 5.0
    # A collect request nobody answers (an unlisted VPA) fails after `upi_expiry_minutes`
    # times this many seconds; 60 is real time.
    upi_minute_s: Annotated[float, Field(gt=0, le=60)] = 60.0
    idempotency_ttl_s: Annotated[int, Field(ge=1)] = 86_400

    # Always notified besides each order's `order_meta.notify_url` (the dashboard endpoint).
    webhook_url: str | None = None
    # Waits before retry 1, 2, ... of a webhook that did not get HTTP 200.
    webhook_retry_schedule_s: Annotated[tuple[float, ...], NoDecode] = (120.0, 600.0, 1800.0)
    webhook_timeout_s: Annotated[float, Field(gt=0, le=120)] = 10.0

    # Payouts V2: the dashboard's webhook endpoint (Payouts has no per-transfer URL), and
    # the pace of a transfer: each step (RECEIVED -> PENDING -> SUCCESS -> COMPLETED) after
    # this long on the sandbox clock; the "pending" test accounts wait `payout_pending_s`
    # more; a reversal lands `payout_reversal_s` after COMPLETED; the "timeout" test account
    # answers its create after `payout_slow_answer_s`. Due steps run every `payout_tick_s`
    # and on every Payouts call.
    payout_webhook_url: str | None = None
    payout_step_s: Annotated[float, Field(ge=0, le=86_400)] = 2.0
    payout_pending_s: Annotated[float, Field(ge=0, le=30 * 86_400)] = 60.0
    payout_reversal_s: Annotated[float, Field(ge=0, le=30 * 86_400)] = 5.0
    payout_slow_answer_s: Annotated[float, Field(ge=0, le=120)] = 25.0
    payout_tick_s: Annotated[float, Field(gt=0, le=60)] = 0.2

    # Easy Split and settlement reports (split/settings.py; changeable at run time through
    # `/_sandbox/easy-split`). Times on the sandbox clock; due steps run every split_tick_s.
    vendor_kyc_s: Annotated[float, Field(ge=0, le=365 * 86_400)] = 60.0
    vendor_settlement_s: Annotated[float, Field(ge=0, le=365 * 86_400)] = 86_400.0
    vendor_settlement_step_s: Annotated[float, Field(ge=0, le=86_400)] = 2.0
    merchant_settlement_s: Annotated[float, Field(ge=0, le=365 * 86_400)] = 86_400.0
    settlement_service_charge_bps: Annotated[int, Field(ge=0, le=10_000)] = 175
    split_tick_s: Annotated[float, Field(gt=0, le=60)] = 0.2

    # Subscriptions (subscriptions/settings.py; changeable at run time through
    # `/_sandbox/subscriptions/settings`): their webhook endpoint (Cashfree configures it apart
    # from PG's; `webhook_url` when unset), how long a hosted authorisation link lives, the
    # wait after the pre-debit notification, and UPI AutoPay's hourly retries, all on the
    # sandbox clock. Due steps run every subscription_tick_s and whenever the clock moves.
    subscription_webhook_url: str | None = None
    subscription_link_ttl_s: Annotated[float, Field(gt=0, le=365 * 86_400)] = 1800.0
    subscription_pdn_lead_s: Annotated[float, Field(ge=0, le=30 * 86_400)] = 86_400.0
    subscription_upi_retry_s: Annotated[float, Field(ge=0, le=86_400)] = 3600.0
    subscription_tick_s: Annotated[float, Field(gt=0, le=60)] = 0.2

    rate_limit_profile: RateProfile = "sandbox"
    rate_limit_multiplier: Annotated[float, Field(gt=0, le=10_000)] = 1.0

    latency_ms: Millis = 0
    error_rate: Rate = 0.0
    webhook_drop_rate: Rate = 0.0
    webhook_duplicates: Annotated[int, Field(ge=1, le=20)] = 1
    webhook_reorder_window_ms: Millis = 0
    webhook_jitter_ms: Millis = 0
    # Fixes the dice of the fault injection, for reproducible runs.
    seed: int | None = None

    @field_validator("webhook_retry_schedule_s", mode="before")
    @classmethod
    def _schedule(cls, value: object) -> object:
        return _split_floats(value)

    @field_validator("webhook_retry_schedule_s")
    @classmethod
    def _schedule_sane(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if len(value) > 20 or any(not 0 <= step <= 86_400 for step in value):
            raise ValueError("retry waits must be 0..86400 s, at most 20 of them")
        return value

    @field_validator("public_url", "webhook_url", "payout_webhook_url", "subscription_webhook_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/") if value is not None else None

    @model_validator(mode="after")
    def _faults_valid(self) -> Self:
        self.faults()  # the same bounds as the run-time API
        return self

    def split_settings(self) -> SplitSettings:
        return SplitSettings(
            kyc_s=self.vendor_kyc_s,
            vendor_settlement_s=self.vendor_settlement_s,
            vendor_step_s=self.vendor_settlement_step_s,
            merchant_settlement_s=self.merchant_settlement_s,
            service_charge_bps=self.settlement_service_charge_bps,
        )

    def faults(self) -> Faults:
        return Faults(
            latency_ms=self.latency_ms,
            error_rate=self.error_rate,
            webhook_drop_rate=self.webhook_drop_rate,
            webhook_duplicates=self.webhook_duplicates,
            webhook_reorder_window_ms=self.webhook_reorder_window_ms,
            webhook_jitter_ms=self.webhook_jitter_ms,
        )
