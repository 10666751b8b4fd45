"""Revenue recognized at consumption (DESIGN §10): the share rule, property-based.

Over a lot's life, whatever the sequence of draws and refunds, what was recognized plus
what was refunded is its taxable value to the paisa; no draw carries more basis than is
left, and a proportional draw stays within a paisa of its exact share.
"""

from __future__ import annotations

import uuid
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from commdesk_billing.modules.wallet import recognition
from commdesk_billing.modules.wallet.fifo import LotBalance
from commdesk_billing.modules.wallet.recognition import share


def test_the_rule_on_a_pack() -> None:
    # ₹300 pack: 3000 base credits, 25424 paise taxable.
    assert share(25424, 3000, 100) == 847  # 847.47 down
    assert share(25424, 3000, 177) == 1500  # 1499.98 up
    assert share(25424, 3000, 3000) == 25424
    assert share(1, 2, 1) == 1  # exactly half: up
    assert share(0, 10, 3) == 0  # promotional credits carry nothing


@pytest.mark.parametrize(("u", "r", "k"), [(10, 5, 0), (10, 5, 6), (-1, 5, 1)])
def test_impossible_draws_are_refused(u: int, r: int, k: int) -> None:
    with pytest.raises(ValueError):
        share(u, r, k)


@given(
    taxable=st.integers(min_value=0, max_value=10**9),
    credits=st.integers(min_value=1, max_value=10**6),
    data=st.data(),
)
def test_any_sequence_of_draws_recognizes_exactly_the_taxable_value(
    taxable: int, credits: int, data: st.DataObject
) -> None:
    unrecognized, remaining, recognized = taxable, credits, 0
    while remaining:
        k = data.draw(st.integers(min_value=1, max_value=remaining))
        basis = share(unrecognized, remaining, k)
        exact = Fraction(unrecognized * k, remaining)
        assert 0 <= basis <= unrecognized
        assert abs(basis - exact) <= Fraction(1, 2)
        unrecognized, remaining, recognized = (
            unrecognized - basis,
            remaining - k,
            recognized + basis,
        )
    assert (recognized, unrecognized) == (taxable, 0)


@given(
    taxable=st.integers(min_value=1, max_value=10**7),
    credits=st.integers(min_value=2, max_value=10**4),
    data=st.data(),
)
def test_refunds_between_draws_still_add_up(
    taxable: int, credits: int, data: st.DataObject
) -> None:
    """A refund takes credits and its own taxable value (proportional to what it refunds,
    from the paise); the draws take the rest. If the refund empties the lot, or takes more
    than is left, the residual settles it (wallet/refunds.py `_basis_leaving`)."""
    unrecognized, remaining, recognized, refunded = taxable, credits, 0, 0
    while remaining:
        k = data.draw(st.integers(min_value=1, max_value=remaining))
        if data.draw(st.booleans()):
            t = (2 * taxable * k + credits) // (2 * credits)  # the refund's own figure
            left = unrecognized - t
            residual = left if left < 0 or (left > 0 and k == remaining) else 0
            refunded += t
            recognized += residual
            unrecognized = left - residual
        else:
            basis = share(unrecognized, remaining, k)
            recognized += basis
            unrecognized -= basis
        remaining -= k
        assert unrecognized >= 0
    assert recognized + refunded == taxable and unrecognized == 0


def test_a_batch_draws_on_what_the_earlier_draws_left() -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    lots = [LotBalance(a, 10, total=10, unrecognized=85), LotBalance(b, 100, 100, 847)]
    first, lots = recognition.draw(lots, 4)
    second, lots = recognition.draw(lots, 10)
    assert [(d.lot_id, d.credits, d.basis_paise) for d in first] == [(a, 4, 34)]
    # 6 left in the first lot carry all of its 51 paise; 4 of the second carry 34 (33.88).
    assert [(d.lot_id, d.credits, d.basis_paise) for d in second] == [(a, 6, 51), (b, 4, 34)]
    assert lots == [LotBalance(a, 0, 0, 0), LotBalance(b, 96, 96, 813)]
    assert recognition.basis_of(first + second) == 119


def test_reserved_credits_count_in_the_share_but_are_not_drawn() -> None:
    """A refund in flight reserved 50 of the lot's 100: a draw of 50 is half the lot, not
    all of it, so the refund's basis is still there when it succeeds."""
    lot = LotBalance(uuid.uuid4(), remaining=50, total=100, unrecognized=1000)
    [d], [after] = recognition.draw([lot], 50)
    assert d.basis_paise == 500 and after.unrecognized == 500 and after.total == 50
