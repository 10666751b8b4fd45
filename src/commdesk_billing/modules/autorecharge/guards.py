"""The guards a request passes before anything is bought, in the order they are asked.
Each refusal is a decision of the log: (decision, reason, facts)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from commdesk_billing.config import Settings
from commdesk_billing.modules.autorecharge.model import RechargeSettings, Usage

# Caps count calendar days and months in India, where the members are.
IST = timezone(timedelta(hours=5, minutes=30))


@dataclass(frozen=True)
class Refusal:
    decision: str  # skipped | backed_off | capped | runaway
    reason: str
    facts: dict[str, Any] = field(default_factory=dict)


def day_start(now: datetime) -> datetime:
    return now.astimezone(IST).replace(hour=0, minute=0, second=0, microsecond=0)


def month_start(now: datetime) -> datetime:
    return day_start(now).replace(day=1)


def before_pricing(
    settings: Settings, cfg: RechargeSettings | None, now: datetime
) -> Refusal | None:
    """What needs no figures: the kill switch, the member's switch, the back-off."""
    if not settings.auto_recharge_enabled:
        return Refusal("skipped", "paused")
    if cfg is None or not cfg.enabled:
        return Refusal("skipped", "disabled")
    if cfg.backoff_until is not None and cfg.backoff_until > now:
        return Refusal(
            "backed_off",
            "failure_backoff",
            {"retry_at": cfg.backoff_until.isoformat(), "failures": cfg.consecutive_failures},
        )
    return None


def with_usage(
    settings: Settings, cfg: RechargeSettings, usage: Usage, amount_paise: int, now: datetime
) -> Refusal | None:
    """Cooldown, runaway, then the member's caps (counts and amounts, today and this
    month, this recharge included)."""
    cooldown = timedelta(seconds=settings.auto_recharge_cooldown_s)
    if usage.last_success_at is not None and usage.last_success_at + cooldown > now:
        return Refusal(
            "skipped",
            "cooldown",
            {"until": (usage.last_success_at + cooldown).isoformat()},
        )
    if usage.window_count >= settings.auto_recharge_runaway_max:
        return Refusal(
            "runaway",
            "too_many_recharges",
            {
                "recharges": usage.window_count,
                "window_s": settings.auto_recharge_runaway_window_s,
            },
        )
    caps = (
        ("daily_count", cfg.max_recharges_per_day, usage.today_count + 1),
        ("monthly_count", cfg.max_recharges_per_month, usage.month_count + 1),
        ("daily_amount", cfg.max_paise_per_day, usage.today_paise + amount_paise),
        ("monthly_amount", cfg.max_paise_per_month, usage.month_paise + amount_paise),
    )
    for reason, cap, would_be in caps:
        if cap is not None and would_be > cap:
            return Refusal("capped", reason, {"cap": cap, "would_be": would_be})
    return None
