"""The metric labels of a payment: its channel, its pack, and why it failed — each a short,
fixed vocabulary (a label value is a time series; never an id or Cashfree's free text).

Failure reasons: Cashfree's `error_details.error_reason` (`bank_rejected`, `user_dropped`,
…) when known, else its `error_code` (`TRANSACTION_DECLINED`, …) or the description, read for
a known word; whatever matches nothing is `other`. An order that expired or was cancelled
without a failed attempt says so itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

FAILURE_REASONS = (
    "user_dropped",
    "bank_rejected",
    "insufficient_funds",
    "authentication_failed",
    "invalid_instrument",
    "limit_exceeded",
    "timeout",
    "bank_unavailable",
    "risk_blocked",
    "order_expired",
    "order_cancelled",
    "other",
)

# Read in order: the first entry one of whose words the text contains names the reason.
# "declined" comes last: "declined for risk" is a risk block, "insufficient … declined" funds.
_WORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("user_dropped", ("user_dropped", "dropped", "abandon")),
    ("insufficient_funds", ("insufficient", "funds", "balance")),
    ("authentication_failed", ("auth", "otp", "pin", "3ds", "password", "incorrect")),
    ("limit_exceeded", ("limit", "exceed", "velocity", "cap")),
    ("timeout", ("timeout", "timed_out", "timed out", "expired_session", "late")),
    ("risk_blocked", ("risk", "fraud", "blocked", "compliance", "restricted", "tpv")),
    (
        "invalid_instrument",
        ("invalid", "expired_card", "card_expired", "vpa", "not_supported", "unsupported"),
    ),
    ("bank_unavailable", ("unavailable", "downtime", "network", "gateway", "not_reachable")),
    ("bank_rejected", ("bank", "declined", "rejected", "issuer", "decline")),
)

CHANNELS = ("checkout", "auto_recharge", "mandate")
_AUTO_RECHARGE = "system:auto-recharge"  # `Buyer.system("auto-recharge", …).requested_by`


def failure_reason(
    to: str,
    *,
    error_reason: str | None = None,
    error_code: str | None = None,
    description: str | None = None,
) -> str:
    """The failure label of a payment moved to `to` (FAILED, USER_DROPPED, EXPIRED or
    CANCELLED: a `state.Status`, which is a string) with what Cashfree said of it."""
    if to == "USER_DROPPED":
        return "user_dropped"
    for text in (error_reason, error_code, description):
        if not text:
            continue
        lowered = str(text).lower()
        if lowered in FAILURE_REASONS:
            return lowered
        for label, words in _WORDS:
            if any(word in lowered for word in words):
                return label
    if to == "EXPIRED":
        return "order_expired"
    if to == "CANCELLED":
        return "order_cancelled"
    return "other"


def by_auto_recharge(metadata: Mapping[str, Any]) -> bool:
    """Whether auto-recharge opened the payment (its checkout order or its mandate charge:
    both are written under `Buyer.system("auto-recharge", …)`)."""
    return metadata.get("requested_by") == _AUTO_RECHARGE


def channel(metadata: Mapping[str, Any], on_mandate: bool) -> str:
    """checkout | auto_recharge | mandate (see `telemetry/metrics.py`)."""
    if by_auto_recharge(metadata):
        return "auto_recharge"
    return "mandate" if on_mandate else "checkout"


def pack(pack_code: str | None) -> str:
    """The catalog pack bought, or `custom` for a top-up of an amount."""
    return pack_code or "custom"
