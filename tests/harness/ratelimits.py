"""Rate limits for the test run: so generous no test reaches them (the whole suite calls
from 127.0.0.1, often as one user), while the limiter still runs on every request."""

from __future__ import annotations

from typing import Any

_CLASSES = ("orders", "money", "reads")

GENEROUS_RATE_LIMITS: dict[str, Any] = {
    **{f"rate_limit_{c}_{who}": 10**7 for c in _CLASSES for who in ("user", "ip")},
    **{f"rate_limit_{c}_{who}_burst": 10**6 for c in _CLASSES for who in ("user", "ip")},
    "rate_limit_webhooks_ip": 10**7,
    "rate_limit_webhooks_ip_burst": 10**6,
}
