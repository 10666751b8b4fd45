"""The rating arithmetic: graduated tiers in milli-credits, the month's running total
rounded half up, so a month costs the same however its usage was split into events."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from commdesk_billing.modules.usage import rating
from commdesk_billing.modules.usage.model import Tier

TIERS = (Tier(1000, 2000), Tier(5000, 1000), Tier(None, 250))


def test_graduated_cost_takes_each_unit_at_its_tier() -> None:
    assert rating.cost(TIERS, 0) == 0
    assert rating.cost(TIERS, 1000) == 2_000_000
    assert rating.cost(TIERS, 1001) == 2_001_000
    assert rating.cost(TIERS, 6000) == 2_000_000 + 4_000_000 + 250_000
    assert rating.event_millicredits(TIERS, 999, 3) == 2000 + 1000 + 1000


def test_rounding_is_half_up_on_the_running_total() -> None:
    assert rating.event_credits(0, 499) == 0
    assert rating.event_credits(0, 500) == 1
    assert rating.event_credits(499, 1) == 1  # 0.5 reached: charged now
    assert rating.event_credits(500, 999) == 0  # 1.499 still rounds to 1


@pytest.mark.parametrize(
    "tiers",
    [
        [],
        [Tier(10, 1)],
        [Tier(None, 1), Tier(None, 1)],
        [Tier(10, 1), Tier(10, 1), Tier(None, 1)],
        [Tier(0, 1), Tier(None, 1)],
        [Tier(None, -1)],
        [Tier(None, rating.MAX_MILLICREDITS_PER_UNIT + 1)],
        [Tier(i + 1, 1) for i in range(20)] + [Tier(None, 1)],
    ],
)
def test_malformed_tiers_are_refused(tiers: list[Tier]) -> None:
    with pytest.raises(ValueError):
        rating.check_tiers(tiers)


tier_lists = st.lists(
    st.tuples(st.integers(1, 500), st.integers(0, 5000)), min_size=0, max_size=5
).map(
    lambda steps: [
        *[Tier(sum(s for s, _ in steps[: i + 1]), p) for i, (_, p) in enumerate(steps)],
        Tier(None, 777),
    ]
)


@settings(max_examples=300, deadline=None)
@given(tiers=tier_lists, quantities=st.lists(st.integers(1, 300), min_size=1, max_size=40))
def test_a_month_costs_the_same_however_its_usage_is_split(
    tiers: list[Tier], quantities: list[int]
) -> None:
    rating.check_tiers(tiers)
    units, milli, credits = 0, 0, 0
    for q in quantities:
        m = rating.event_millicredits(tiers, units, q)
        credits += rating.event_credits(milli, m)
        units, milli = units + q, milli + m
    whole = rating.event_millicredits(tiers, 0, units)
    assert milli == whole
    assert credits == rating.event_credits(0, whole) == (2 * whole + 1000) // 2000
