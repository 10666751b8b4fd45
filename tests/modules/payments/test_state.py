"""The payment state machine never goes back from money."""

from __future__ import annotations

from hypothesis import strategies as st

from commdesk_billing.modules.payments.state import ALLOWED, OPEN, Status, can_move

states = st.sampled_from(["29", "27", "07"])


def test_the_state_machine_never_goes_back_from_money() -> None:
    for to, sources in ALLOWED.items():
        assert Status.CREDITED not in sources or to is Status.CREDITED
        if to is not Status.CREDITED:
            assert Status.PAID not in sources
    assert can_move(Status.EXPIRED, Status.PAID)  # a late success is still owed its credits
    assert can_move(Status.CREATED, Status.PAID)  # so is one whose create answer was lost
    assert not can_move(Status.PAID, Status.FAILED)
    assert not can_move(Status.CREDITED, Status.PAID)
    assert not can_move(Status.REVIEW, Status.PAID)  # review is resolved by a person
    assert OPEN.isdisjoint({Status.PAID, Status.CREDITED, Status.REVIEW})
