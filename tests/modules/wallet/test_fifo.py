"""FIFO allocation over credit lots: property-based."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from commdesk_billing.modules.wallet.fifo import LotBalance, allocate_fifo

lots_strategy = st.lists(st.integers(min_value=0, max_value=10**9), min_size=0, max_size=30).map(
    lambda sizes: [LotBalance(uuid.uuid4(), n) for n in sizes]
)


@given(lots=lots_strategy, data=st.data())
def test_allocation_takes_exactly_the_amount_in_order(
    lots: list[LotBalance], data: st.DataObject
) -> None:
    total = sum(lot.remaining for lot in lots)
    if total == 0:
        with pytest.raises(ValueError):
            allocate_fifo(lots, 1)
        return
    credits = data.draw(st.integers(min_value=1, max_value=total))
    taken = allocate_fifo(lots, credits)
    assert sum(n for _, n in taken) == credits
    by_id = {lot.lot_id: lot for lot in lots}
    assert all(0 < n <= by_id[lot_id].remaining for lot_id, n in taken)
    # FIFO: every lot before the last one drawn is emptied, and no later lot is touched.
    drawn_ids = [lot_id for lot_id, _ in taken]
    nonempty = [lot for lot in lots if lot.remaining > 0]
    assert drawn_ids == [lot.lot_id for lot in nonempty[: len(drawn_ids)]]
    for lot_id, n in taken[:-1]:
        assert n == by_id[lot_id].remaining


@given(lots=lots_strategy, extra=st.integers(min_value=1, max_value=10**6))
def test_allocation_refuses_more_than_the_lots_hold(lots: list[LotBalance], extra: int) -> None:
    with pytest.raises(ValueError):
        allocate_fifo(lots, sum(lot.remaining for lot in lots) + extra)


@pytest.mark.parametrize("credits", [0, -1])
def test_allocation_refuses_non_positive(credits: int) -> None:
    with pytest.raises(ValueError):
        allocate_fifo([LotBalance(uuid.uuid4(), 10)], credits)
