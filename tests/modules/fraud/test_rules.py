"""The rules engine alone: each rule fires on its pattern, and not on ordinary traffic."""

from __future__ import annotations

from typing import Any

import pytest

from commdesk_billing.config import Settings
from commdesk_billing.modules.fraud.rules import Action, Features, Thresholds, score
from commdesk_billing.modules.fraud.screening import instrument_of

T = Thresholds()

# A member's ordinary purchase: a few attempts this hour, an old account, no history.
NORMAL = Features(
    user_attempts=2,
    ip_attempts=3,
    device_attempts=2,
    device_accounts=1,
    failed_attempts=1,
    account_age_s=90 * 86400,
    largest_pack=True,
    recent_same_amount_paid=0,
    purchases=6,
    refunds=1,
    drained_share_bp=4000,
    mismatches=0,
    instrument_attempts=2,
    instrument_accounts=1,
)


def test_normal_traffic_fires_nothing() -> None:
    v = score(NORMAL, T)
    assert (v.score, v.action, v.fired) == (0, Action.allow, ())


def test_nothing_known_fires_nothing() -> None:
    assert score(Features(), T).fired == ()


@pytest.mark.parametrize(
    ("change", "rule", "weight", "features"),
    [
        ({"user_attempts": 16}, "velocity_user", 30, {"attempts": 16, "limit": 15}),
        ({"ip_attempts": 61}, "velocity_ip", 25, {"attempts": 61, "limit": 60}),
        ({"device_attempts": 16}, "velocity_device", 25, {"attempts": 16, "limit": 15}),
        ({"instrument_attempts": 11}, "velocity_instrument", 30, {"attempts": 11, "limit": 10}),
        ({"device_accounts": 4}, "device_accounts", 40, {"accounts": 4, "limit": 3}),
        ({"instrument_accounts": 4}, "instrument_accounts", 40, {"accounts": 4, "limit": 3}),
        ({"failed_attempts": 5}, "failed_burst", 30, {"failed": 5, "limit": 5}),
        (
            {"account_age_s": 3600},
            "new_account_largest_pack",
            20,
            {"account_age_s": 3600},
        ),
        (
            {"recent_same_amount_paid": 1},
            "duplicate_payment",
            35,
            {"recent_same_amount": 1, "window_s": 600},
        ),
        (
            {"refunds": 3},
            "refund_abuse",
            30,
            {"refunds": 3, "purchases": 6, "ratio_bp": 5000},
        ),
        ({"drained_share_bp": 9500}, "community_drain", 30, {"share_bp": 9500}),
        ({"mismatches": 2}, "webhook_mismatch", 50, {"mismatches": 2}),
    ],
)
def test_each_rule_fires_on_its_pattern(
    change: dict[str, Any], rule: str, weight: int, features: dict[str, Any]
) -> None:
    v = score(Features(**{**NORMAL.__dict__, **change}), T)
    assert [(f.rule, f.weight, f.features) for f in v.fired] == [(rule, weight, features)]
    assert v.score == weight


def test_a_new_account_buying_a_small_pack_is_ordinary() -> None:
    v = score(Features(**{**NORMAL.__dict__, "account_age_s": 0, "largest_pack": False}), T)
    assert v.fired == ()


def test_refund_ratio_needs_enough_refunds() -> None:
    # One refund of one purchase is 100 %, but one refund is no pattern.
    assert score(Features(purchases=1, refunds=1), T).fired == ()


def test_scores_add_up_cap_at_100_and_decide() -> None:
    review = score(Features(user_attempts=16, recent_same_amount_paid=1), T)
    assert (review.score, review.action) == (65, Action.review)
    assert review.rules == ["velocity_user", "duplicate_payment"]
    block = score(Features(device_accounts=9, mismatches=1, user_attempts=99), T)
    assert (block.score, block.action) == (100, Action.block)


def test_a_weight_of_zero_switches_a_rule_off() -> None:
    t = Thresholds(user_velocity=(15, 0))
    assert score(Features(user_attempts=99), t).fired == ()


def test_thresholds_come_from_settings() -> None:
    s = Settings(fraud_review_score=10, fraud_block_score=20, fraud_user_velocity_max=1)
    t = Thresholds.of(s)
    v = score(Features(user_attempts=2), t)
    assert (v.score, v.action) == (30, Action.block)


def test_review_above_block_is_refused() -> None:
    with pytest.raises(ValueError, match="BILLING_FRAUD_REVIEW_SCORE exceeds"):
        Settings(fraud_review_score=70, fraud_block_score=60)


@pytest.mark.parametrize(
    ("method", "wanted"),
    [
        ({"upi": {"channel": "collect", "upi_id": " User@YBL "}}, ("vpa:user@ybl", "user@ybl")),
        (
            {"card": {"card_number": "470613XXXXXX2123", "card_network": "visa"}},
            ("card:470613XXXXXX2123:visa", None),
        ),
        (
            {"card": {"instrument_id": "inst_1", "card_number": "4706XX", "card_network": "visa"}},
            ("card:inst_1:visa", None),
        ),
        ({"upi": {"channel": "qrcode", "upi_id": None}}, (None, None)),
        ({"netbanking": {"netbanking_bank_code": "3333"}}, (None, None)),
        (None, (None, None)),
    ],
)
def test_the_paying_instrument_is_read_from_cashfree_payment_method(
    method: dict[str, Any] | None, wanted: tuple[str | None, str | None]
) -> None:
    assert instrument_of(method) == wanted
