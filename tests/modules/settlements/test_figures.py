"""A settlement's arithmetic (`figures.settle`) and the scheduled periods (`period_of`)."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from commdesk_billing.config import Settings
from commdesk_billing.modules.settlements.figures import Waiting, settle
from commdesk_billing.modules.settlements.model import Figures, Terms
from commdesk_billing.modules.settlements.service import period_of

TERMS = Terms(
    reserve_bps=1000, reserve_days=7, tds_bps=100, tcs_bps=50, fee_paise=118, minimum_paise=10_000
)


def test_the_lines_round_half_up_to_the_paisa() -> None:
    f = settle(123_457, 0, TERMS)
    assert isinstance(f, Figures)
    assert (f.reserve_paise, f.gross_paise, f.tds_paise, f.tcs_paise, f.net_paise) == (
        12_346,
        111_111,
        1_111,
        556,
        109_326,
    )
    # Earlier reserves still held are not available.
    g = settle(123_457, 23_457, TERMS)
    assert isinstance(g, Figures) and (g.reserve_paise, g.gross_paise) == (10_000, 90_000)


def test_nothing_payable_and_below_minimum_wait() -> None:
    assert settle(0, 0, TERMS) == Waiting("nothing_payable", 0)
    assert settle(-500, 0, TERMS) == Waiting("nothing_payable", -500)  # a receivable
    assert settle(5_000, 5_000, TERMS) == Waiting("nothing_payable", 0)
    waiting = settle(11_000, 0, TERMS)
    assert isinstance(waiting, Waiting) and waiting.reason == "below_minimum"
    assert isinstance(settle(11_600, 0, TERMS), Figures)  # net 10 166


@given(
    payable=st.integers(min_value=-(10**9), max_value=10**12),
    held=st.integers(min_value=0, max_value=10**9),
    reserve=st.integers(min_value=0, max_value=10_000),
    tds=st.integers(min_value=0, max_value=10_000),
    tcs=st.integers(min_value=0, max_value=10_000),
    fee=st.integers(min_value=0, max_value=10_000),
)
def test_the_lines_always_add_up(
    payable: int, held: int, reserve: int, tds: int, tcs: int, fee: int
) -> None:
    terms = Terms(reserve, 7, tds, tcs, fee, 10_000)
    f = settle(payable, held, terms)
    if isinstance(f, Waiting):
        return
    assert f.payable_paise - f.reserves_held_paise - f.reserve_paise == f.gross_paise
    assert f.gross_paise == f.tds_paise + f.tcs_paise + f.fee_paise + f.net_paise
    assert f.net_paise >= 10_000 and min(f.reserve_paise, f.tds_paise, f.tcs_paise) >= 0


def test_periods_start_at_midnight_in_india() -> None:
    weekly = Settings()
    # Sunday 6 Dec 2026, 20:00 UTC is Monday 7 Dec 01:30 IST: the week of the 7th.
    key, cut = period_of(weekly, datetime(2026, 12, 6, 20, 0, tzinfo=UTC))
    assert (key, cut) == ("weekly:2026-12-07", datetime(2026, 12, 6, 18, 30, tzinfo=UTC))
    key, cut = period_of(weekly, datetime(2026, 12, 6, 18, 0, tzinfo=UTC))
    assert (key, cut) == ("weekly:2026-11-30", datetime(2026, 11, 29, 18, 30, tzinfo=UTC))
    daily = Settings(settlement_period="daily")
    key, _ = period_of(daily, datetime(2026, 12, 9, 12, 0, tzinfo=UTC))
    assert key == "daily:2026-12-09"
