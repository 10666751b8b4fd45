"""Refund arithmetic (modules/refunds/allocation.py) against the GST module's purchases."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from commdesk_billing.modules.refunds.allocation import (
    Parts,
    Purchase,
    Room,
    Service,
    cumulative,
    fits,
    next_refund,
    next_service_refund,
    refundable,
)
from commdesk_billing.modules.tax.gst import compute


def _purchase(price: int, mode: str, intra: bool, bonus_pct: int) -> Purchase:
    g = compute(
        price, rate_bp=1800, mode=mode, buyer_state="29" if intra else "27", seller_state="29"
    )  # type: ignore[arg-type]
    base = max(1, g.taxable_paise // 10 if mode == "exclusive" else price // 10)
    return Purchase(
        amount_paise=g.amount_paise,
        taxable_paise=g.taxable_paise,
        cgst_paise=g.cgst_paise,
        sgst_paise=g.sgst_paise,
        igst_paise=g.igst_paise,
        base_credits=base,
        bonus_credits=base * bonus_pct // 100,
    )


purchases = st.builds(
    _purchase,
    st.integers(min_value=100, max_value=10_000_000),
    st.sampled_from(["inclusive", "exclusive"]),
    st.booleans(),
    st.sampled_from([0, 5, 10, 20, 33]),
)


def _check_parts(p: Purchase, part: Parts) -> None:
    assert part.taxable_paise + part.tax_paise == part.amount_paise
    assert (
        min(
            part.taxable_paise, part.cgst_paise, part.sgst_paise, part.igst_paise, part.base_credits
        )
        >= 0
    )
    if p.igst_paise:
        assert part.cgst_paise == part.sgst_paise == 0
    else:
        assert part.igst_paise == 0


@settings(max_examples=300, deadline=None)
@given(purchases, st.lists(st.tuples(st.integers(1, 10**7), st.booleans()), max_size=12))
def test_refunds_never_exceed_the_purchase_and_add_up_exactly(
    p: Purchase, asks: list[tuple[int, bool]]
) -> None:
    standing = Parts()
    clean = True  # no refund has failed in between
    for ask, fails in asks:
        left = p.amount_paise - standing.amount_paise
        if left == 0:
            break
        amount = 1 + ask % left
        part = next_refund(p, standing, amount)
        _check_parts(p, part)
        if fails:
            clean = False  # its parts leave the standing sum again
            continue
        standing = standing + part
        for name in (
            "amount_paise",
            "taxable_paise",
            "cgst_paise",
            "sgst_paise",
            "igst_paise",
            "base_credits",
            "bonus_credits",
        ):
            assert getattr(standing, name) <= getattr(p, name), name
        # A buyer never keeps a credit whose money came back.
        assert standing.base_credits * p.amount_paise >= standing.amount_paise * p.base_credits
    if clean:
        assert standing == cumulative(p, standing.amount_paise)
    rest = p.amount_paise - standing.amount_paise
    if rest and clean:
        last = next_refund(p, standing, rest)
        total = standing + last
        assert total == cumulative(p, p.amount_paise)
        assert (total.taxable_paise, total.tax_paise, total.base_credits) == (
            p.taxable_paise,
            p.amount_paise - p.taxable_paise,
            p.base_credits,
        )
        assert (total.cgst_paise, total.sgst_paise, total.igst_paise) == (
            p.cgst_paise,
            p.sgst_paise,
            p.igst_paise,
        )


@settings(max_examples=300, deadline=None)
@given(purchases, st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 10**6))
def test_refundable_is_the_largest_amount_that_fits(
    p: Purchase, consumed: int, bonus_gone: int, held: int
) -> None:
    room = Room(
        base_drawable=max(0, p.base_credits - consumed),
        bonus_drawable=max(0, p.bonus_credits - bonus_gone),
        available=max(0, p.base_credits + p.bonus_credits - consumed - held),
    )
    can = refundable(p, Parts(), room)
    if can:
        part = next_refund(p, Parts(), can)
        assert fits(part, room)
        # The credits taken back are never consumed ones.
        assert part.base_credits <= p.base_credits - min(consumed, p.base_credits)
    if can < p.amount_paise:
        assert not fits(next_refund(p, Parts(), can + 1), room)


def test_the_pack_300_example() -> None:
    p = Purchase(30000, 25424, 2288, 2288, 0, 3000, 200)
    a = next_refund(p, Parts(), 15005)
    b = next_refund(p, a, 14995)
    assert (a.base_credits, a.bonus_credits, b.base_credits, b.bonus_credits) == (
        1501,
        101,
        1499,
        99,
    )
    assert a + b == cumulative(p, 30000)
    # After 1000 credits were spent (FIFO from the purchase lot): 2000 credits, 20000 paise.
    assert refundable(p, Parts(), Room(2000, 200, 2200)) == 20000


def test_bad_requests_are_refused() -> None:
    p = Purchase(30000, 25424, 2288, 2288, 0, 3000, 200)
    with pytest.raises(ValueError):
        next_refund(p, Parts(), 0)
    with pytest.raises(ValueError):
        next_refund(p, Parts(amount_paise=29000), 1001)
    with pytest.raises(ValueError):
        Purchase(30000, 25000, 2288, 2288, 0, 3000, 200)  # does not add up


def test_a_service_refund_splits_tax_as_the_invoice_and_takes_no_credits() -> None:
    # ₹299 GST inclusive, intra-state: 25339 taxable, 2280 CGST, 2281 SGST.
    s = Service(29900, 25339, 2280, 2281, 0)
    first = next_service_refund(s, Parts(), 10000)
    assert first == Parts(10000, 8475, 762, 763, 0, 0, 0)
    rest = next_service_refund(s, first, 19900)
    assert first + rest == Parts(29900, 25339, 2280, 2281, 0, 0, 0)
    inter = next_service_refund(Service(11800, 10000, 0, 0, 1800), Parts(), 5900)
    assert inter == Parts(5900, 5000, 0, 0, 900, 0, 0)
    with pytest.raises(ValueError):
        next_service_refund(s, first, 19901)


@settings(max_examples=300, deadline=None)
@given(
    purchases,
    st.lists(st.tuples(st.integers(1, 10**7), st.integers(0, 10**6)), min_size=1, max_size=8),
    st.booleans(),
)
def test_refunds_failing_after_later_ones_still_add_up_to_the_invoice(
    p: Purchase, asks: list[tuple[int, int]], service: bool
) -> None:
    """Refunds are asked while others stand, and some of those fail *after* later ones were
    worked out on top of them (the standing sum leaves the cumulative curve); the last refund
    of what is left still lands every part on the invoice exactly, a service payment's as a
    purchase's, and no part is ever over."""
    s = Service(p.amount_paise, p.taxable_paise, p.cgst_paise, p.sgst_paise, p.igst_paise)

    def ask(standing: Parts, amount: int) -> Parts:
        if service:
            return next_service_refund(s, standing, amount)
        return next_refund(p, standing, amount)

    live: list[Parts] = []
    for amount_seed, fail_seed in asks:
        standing = sum(live, Parts())
        left = p.amount_paise - standing.amount_paise
        if left == 0:
            break
        live.append(ask(standing, 1 + amount_seed % left))
        if fail_seed % 3 == 0 and len(live) > 1:
            live.pop(fail_seed % (len(live) - 1))  # an earlier one fails now
    standing = sum(live, Parts())
    if standing.amount_paise < p.amount_paise:
        live.append(ask(standing, p.amount_paise - standing.amount_paise))
    total = sum(live, Parts())
    for part in live:
        _check_parts(p, part)
    assert (total.amount_paise, total.taxable_paise) == (p.amount_paise, p.taxable_paise)
    assert (total.cgst_paise, total.sgst_paise, total.igst_paise) == (
        p.cgst_paise,
        p.sgst_paise,
        p.igst_paise,
    )
    if service:
        assert total.credits == 0
    else:
        assert (total.base_credits, total.bonus_credits) == (p.base_credits, p.bonus_credits)
