"""Per-endpoint, per-minute request limits with Cashfree's `x-ratelimit-*` headers (§8.2).

A fixed one-minute window per (endpoint, app id or client IP). `x-ratelimit-retry` is the
seconds left in the window once it is used up, 0 before. Tests may shorten the window
(`window_s`, through `/_sandbox/rate-limits`) to get a 429 with a hint short enough to wait.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Literal

from commdesk_billing.gateway.sandbox.config import RateProfile

Endpoint = Literal[
    "create_order",
    "get_order",
    "get_payments",
    "get_payment",
    "pay_order",
    "create_refund",
    "get_refund",
    "get_settlements",
    "payout_beneficiary",
    "payout_create_transfer",
    "payout_get_transfer",
    "bank_account_verification",
]

# (per minute, keyed by) from cashfree.md §8.2. Sandbox numbers for "get payment by id" are
# not published: the sandbox uses the "get payments" number. Payouts and verification
# publish none in cashfree.md: the sandbox borrows PG's create-order and get-order numbers
# (README).
LIMITS: dict[str, dict[Endpoint, int]] = {
    "production": {
        "create_order": 200,
        "get_order": 400,
        "get_payments": 100,
        "get_payment": 130,
        "pay_order": 100,
        "create_refund": 100,
        "get_refund": 30,
        "get_settlements": 30,
        "payout_beneficiary": 200,
        "payout_create_transfer": 200,
        "payout_get_transfer": 400,
        "bank_account_verification": 200,
    },
    "sandbox": {
        "create_order": 30,
        "get_order": 60,
        "get_payments": 30,
        "get_payment": 30,
        "pay_order": 30,
        "create_refund": 30,
        "get_refund": 60,
        "get_settlements": 20,
        "payout_beneficiary": 30,
        "payout_create_transfer": 30,
        "payout_get_transfer": 60,
        "bank_account_verification": 30,
    },
}
BY_IP: frozenset[Endpoint] = frozenset({"pay_order"})
WINDOW_S = 60.0


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    headers: dict[str, str]


class RateLimiter:
    def __init__(self, profile: RateProfile, multiplier: float, window_s: float = WINDOW_S) -> None:
        self.configure(profile, multiplier, window_s)

    def configure(
        self, profile: RateProfile, multiplier: float, window_s: float = WINDOW_S
    ) -> None:
        self.profile = profile
        self.multiplier = multiplier
        self.window_s = window_s
        self._windows: dict[tuple[str, str], tuple[float, int]] = {}

    def limit(self, endpoint: Endpoint) -> int | None:
        if self.profile == "off":
            return None
        return max(1, math.floor(LIMITS[self.profile][endpoint] * self.multiplier))

    def check(self, endpoint: Endpoint, app_id: str, client_ip: str) -> Verdict:
        limit = self.limit(endpoint)
        if limit is None:
            return Verdict(True, {})
        kind = "ip" if endpoint in BY_IP else "app_id"
        key = (endpoint, client_ip if kind == "ip" else app_id)
        now = time.monotonic()
        started, used = self._windows.get(key, (now, 0))
        if now - started >= self.window_s:
            started, used = now, 0
        allowed = used < limit
        if allowed:
            used += 1
        self._windows[key] = (started, used)
        retry = 0 if allowed else math.ceil(self.window_s - (now - started))
        headers = {
            "x-ratelimit-limit": str(limit),
            "x-ratelimit-remaining": str(limit - used),
            "x-ratelimit-retry": str(retry),
            "x-ratelimit-type": kind,
        }
        return Verdict(allowed, headers)
