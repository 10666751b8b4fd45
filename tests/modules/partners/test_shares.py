"""The share arithmetic (`partners/shares.py`): round half up, and refunds that add up to
the whole share however the purchase is split (hypothesis)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from commdesk_billing.modules.partners.shares import next_reversal, share_of, taken_back


def test_the_share_rounds_half_up() -> None:
    assert share_of(25424, 1000) == 2542  # 2 542.4
    assert share_of(25, 2000) == 5
    assert share_of(5, 1000) == 1  # 0.5 -> 1
    assert share_of(4, 1000) == 0  # 0.4 -> 0
    assert share_of(25424, 0) == 0
    assert share_of(25424, 5000) == 12712
    for bad in ((-1, 10), (10, -1), (10, 5001)):
        with pytest.raises(ValueError):
            share_of(*bad)


def test_a_full_refund_takes_it_all_and_never_more() -> None:
    assert taken_back(2542, 25424, 25424) == 2542
    assert taken_back(2542, 25424, 30000) == 2542
    assert taken_back(2542, 25424, 0) == 0
    assert (
        next_reversal(
            10, 100, before_taxable_paise=100, before_share_paise=10, refund_taxable_paise=5
        )
        == 0
    )


@given(
    taxable=st.integers(min_value=1, max_value=10**9),
    bps=st.integers(min_value=0, max_value=5000),
    cuts=st.lists(st.integers(min_value=0, max_value=10**9), max_size=8),
)
def test_partial_refunds_add_up_to_the_whole_share(taxable: int, bps: int, cuts: list[int]) -> None:
    share = share_of(taxable, bps)
    # Refund taxable values that add up to the purchase's (the last takes the rest).
    points = sorted({c % taxable for c in cuts} | {0, taxable})
    parts = [b - a for a, b in itertools.pairwise(points)]
    before_taxable = before_share = 0
    for part in parts:
        back = next_reversal(
            share,
            taxable,
            before_taxable_paise=before_taxable,
            before_share_paise=before_share,
            refund_taxable_paise=part,
        )
        assert 0 <= back <= share - before_share
        before_taxable += part
        before_share += back
        # Where the running total stands is a function of the refunded total alone.
        assert before_share == taken_back(share, taxable, before_taxable)
    assert before_share == share
