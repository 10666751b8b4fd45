"""The fraud rules engine: features in, a score 0-100 and the rules that fired out.

Pure: no I/O, no clock. Every rule is explainable — it names itself, its weight and the
features it looked at — so support can tell a member which rule stopped them, and a test
can show each rule firing on its pattern and not on ordinary traffic. A feature that is
unknown (None: no device header, no instrument yet, Redis and SQL both silent) never fires
a rule: missing evidence is not evidence.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from commdesk_billing.config import Settings


class Action(StrEnum):
    allow = "allow"
    review = "review"
    block = "block"


@dataclass(frozen=True)
class Features:
    """What is known about one purchase attempt (before the order, or once paid)."""

    user_attempts: int | None = None  # this buyer's attempts in the window, this one included
    ip_attempts: int | None = None
    device_attempts: int | None = None
    device_accounts: int | None = None  # distinct buyers seen on the device, this one included
    failed_attempts: int | None = None  # the buyer's failed payment attempts in the window
    account_age_s: int | None = None
    largest_pack: bool = False  # the attempt buys the largest pack on sale
    recent_same_amount_paid: int | None = None  # paid purchases of this amount just now
    purchases: int | None = None  # the buyer's paid purchases, ever
    refunds: int | None = None  # the buyer's refunds, ever
    drained_share_bp: int | None = None  # of credits bought in the window, spent in one community
    mismatches: int | None = None  # webhook amount/identity mismatches against the buyer
    instrument_attempts: int | None = None  # payments on this VPA / card in the window
    instrument_accounts: int | None = None  # distinct buyers on this VPA / card


@dataclass(frozen=True)
class Thresholds:
    review_score: int = 60
    block_score: int = 90
    user_velocity: tuple[int, int] = (15, 30)  # (max, weight): fires above max
    ip_velocity: tuple[int, int] = (60, 25)
    device_velocity: tuple[int, int] = (15, 25)
    failed_burst: tuple[int, int] = (5, 30)  # fires at max or more
    device_accounts: tuple[int, int] = (3, 40)  # fires above max
    new_account: tuple[int, int] = (86400, 20)  # (age under which it fires, weight)
    duplicate: tuple[int, int] = (600, 35)  # (window s, 0 = off; weight)
    refund_ratio: tuple[int, int, int] = (5000, 2, 30)  # (ratio bp, min refunds, weight)
    drain: tuple[int, int] = (9000, 30)  # (share bp at or over which it fires, weight)
    mismatch_weight: int = 50
    instrument_velocity: tuple[int, int] = (10, 30)
    instrument_accounts: tuple[int, int] = (3, 40)

    @classmethod
    def of(cls, s: Settings) -> Thresholds:
        return cls(
            review_score=s.fraud_review_score,
            block_score=s.fraud_block_score,
            user_velocity=(s.fraud_user_velocity_max, s.fraud_user_velocity_weight),
            ip_velocity=(s.fraud_ip_velocity_max, s.fraud_ip_velocity_weight),
            device_velocity=(s.fraud_device_velocity_max, s.fraud_device_velocity_weight),
            failed_burst=(s.fraud_failed_burst_max, s.fraud_failed_burst_weight),
            device_accounts=(s.fraud_device_accounts_max, s.fraud_device_accounts_weight),
            new_account=(s.fraud_new_account_s, s.fraud_new_account_weight),
            duplicate=(s.fraud_duplicate_window_s, s.fraud_duplicate_weight),
            refund_ratio=(
                s.fraud_refund_ratio_bp,
                s.fraud_refund_min_count,
                s.fraud_refund_ratio_weight,
            ),
            drain=(s.fraud_drain_share_bp, s.fraud_drain_weight),
            mismatch_weight=s.fraud_mismatch_weight,
            instrument_velocity=(
                s.fraud_instrument_velocity_max,
                s.fraud_instrument_velocity_weight,
            ),
            instrument_accounts=(
                s.fraud_instrument_accounts_max,
                s.fraud_instrument_accounts_weight,
            ),
        )


@dataclass(frozen=True)
class Fired:
    rule: str
    weight: int
    features: dict[str, Any]


@dataclass(frozen=True)
class Verdict:
    score: int
    action: Action
    fired: tuple[Fired, ...] = field(default=())

    @property
    def rules(self) -> list[str]:
        return [f.rule for f in self.fired]


def _over(value: int | None, limit: int) -> bool:
    return value is not None and value > limit


def evaluate(f: Features, t: Thresholds) -> list[Fired]:
    """Every rule whose pattern the features show (weight 0: the rule is off)."""
    fired: list[Fired] = []

    def fire(rule: str, weight: int, **features: Any) -> None:
        if weight > 0:
            fired.append(Fired(rule, weight, features))

    for rule, value, (limit, weight) in (
        ("velocity_user", f.user_attempts, t.user_velocity),
        ("velocity_ip", f.ip_attempts, t.ip_velocity),
        ("velocity_device", f.device_attempts, t.device_velocity),
        ("velocity_instrument", f.instrument_attempts, t.instrument_velocity),
    ):
        if _over(value, limit):
            fire(rule, weight, attempts=value, limit=limit)
    if _over(f.device_accounts, t.device_accounts[0]):
        fire(
            "device_accounts",
            t.device_accounts[1],
            accounts=f.device_accounts,
            limit=t.device_accounts[0],
        )
    if _over(f.instrument_accounts, t.instrument_accounts[0]):
        fire(
            "instrument_accounts",
            t.instrument_accounts[1],
            accounts=f.instrument_accounts,
            limit=t.instrument_accounts[0],
        )
    if f.failed_attempts is not None and f.failed_attempts >= t.failed_burst[0]:
        fire("failed_burst", t.failed_burst[1], failed=f.failed_attempts, limit=t.failed_burst[0])
    if f.largest_pack and f.account_age_s is not None and f.account_age_s < t.new_account[0]:
        fire("new_account_largest_pack", t.new_account[1], account_age_s=f.account_age_s)
    if t.duplicate[0] > 0 and (f.recent_same_amount_paid or 0) > 0:
        fire(
            "duplicate_payment",
            t.duplicate[1],
            recent_same_amount=f.recent_same_amount_paid,
            window_s=t.duplicate[0],
        )
    ratio_bp, min_refunds, ratio_weight = t.refund_ratio
    if f.refunds is not None and f.purchases and f.refunds >= min_refunds:
        ratio = f.refunds * 10_000 // f.purchases
        if ratio >= ratio_bp:
            fire(
                "refund_abuse",
                ratio_weight,
                refunds=f.refunds,
                purchases=f.purchases,
                ratio_bp=ratio,
            )
    if f.drained_share_bp is not None and f.drained_share_bp >= t.drain[0]:
        fire("community_drain", t.drain[1], share_bp=f.drained_share_bp)
    if f.mismatches:
        fire("webhook_mismatch", t.mismatch_weight, mismatches=f.mismatches)
    return fired


def decide(score: int, t: Thresholds) -> Action:
    if score >= t.block_score:
        return Action.block
    if score >= t.review_score:
        return Action.review
    return Action.allow


def score(f: Features, t: Thresholds) -> Verdict:
    fired = evaluate(f, t)
    total = min(100, sum(x.weight for x in fired))
    return Verdict(total, decide(total, t), tuple(fired))
