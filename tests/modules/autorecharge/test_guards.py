"""The guards' arithmetic on its own: caps count this recharge too, per IST day and month;
the back-off doubles up to its maximum."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from commdesk_billing.config import Settings
from commdesk_billing.modules.autorecharge import guards
from commdesk_billing.modules.autorecharge.model import RechargeSettings, Usage
from commdesk_billing.modules.autorecharge.outcomes import backoff_s

NOW = datetime(2026, 12, 7, 20, 0, tzinfo=UTC)  # 01:30 on the 8th in India


def _cfg(**caps: int | None) -> RechargeSettings:
    return RechargeSettings(
        wallet_id=uuid.uuid4(),
        enabled=True,
        threshold=200,
        pack_code="pack_150",
        amount_paise=None,
        customer_phone="9876543210",
        customer_email=None,
        max_recharges_per_day=caps.get("day"),
        max_recharges_per_month=caps.get("month"),
        max_paise_per_day=caps.get("day_paise"),
        max_paise_per_month=caps.get("month_paise"),
        max_consecutive_failures=3,
        mandate_id=None,
        consecutive_failures=0,
        backoff_until=None,
        burn_credits_per_hour=0,
        predicted_level=200,
        predicted_at=None,
        created_at=NOW,
        updated_at=NOW,
    )


def _usage(
    today: int = 0, today_paise: int = 0, month: int = 0, month_paise: int = 0, window: int = 0
) -> Usage:
    return Usage(today, today_paise, month, month_paise, window, None)


@pytest.mark.parametrize(
    ("caps", "usage", "expected"),
    [
        ({"day": 2}, _usage(today=1, month=1), None),
        ({"day": 2}, _usage(today=2, month=2), ("capped", "daily_count")),
        ({"month": 3}, _usage(today=0, month=3), ("capped", "monthly_count")),
        ({"day_paise": 30_000}, _usage(today_paise=15_000), None),
        ({"day_paise": 29_999}, _usage(today_paise=15_000), ("capped", "daily_amount")),
        ({"month_paise": 15_000}, _usage(), None),
        ({"month_paise": 14_999}, _usage(), ("capped", "monthly_amount")),
        ({}, _usage(window=5), ("runaway", "too_many_recharges")),
        ({}, _usage(window=4), None),
    ],
)
def test_caps_and_runaway(
    caps: dict[str, int], usage: Usage, expected: tuple[str, str] | None
) -> None:
    refused = guards.with_usage(Settings(), _cfg(**caps), usage, 15_000, NOW)
    assert (None if refused is None else (refused.decision, refused.reason)) == expected


def test_cooldown_runs_from_the_last_success() -> None:
    just = Usage(0, 0, 0, 0, 0, NOW - timedelta(minutes=59))
    long_ago = Usage(0, 0, 0, 0, 0, NOW - timedelta(minutes=61))
    refused = guards.with_usage(Settings(), _cfg(), just, 15_000, NOW)
    assert refused is not None and (refused.decision, refused.reason) == ("skipped", "cooldown")
    assert guards.with_usage(Settings(), _cfg(), long_ago, 15_000, NOW) is None


def test_days_and_months_are_indian() -> None:
    assert guards.day_start(NOW).isoformat() == "2026-12-08T00:00:00+05:30"
    assert guards.month_start(NOW).isoformat() == "2026-12-01T00:00:00+05:30"


def test_the_backoff_doubles_up_to_its_max() -> None:
    s = Settings(auto_recharge_backoff_s=3600, auto_recharge_backoff_max_s=5 * 3600)
    assert [backoff_s(s, n) for n in range(5)] == [0, 3600, 7200, 14400, 18000]
