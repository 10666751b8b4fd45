"""GST: the parts always add up, and the packs cost what the catalogue says."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from commdesk_billing.modules.tax.gst import compute

states = st.sampled_from(["29", "27", "07"])


@given(
    price=st.integers(min_value=1, max_value=10**10),
    rate=st.integers(min_value=0, max_value=10_000),
    mode=st.sampled_from(["inclusive", "exclusive"]),
    buyer=states,
)
def test_gst_parts_always_add_up(price: int, rate: int, mode: str, buyer: str) -> None:
    g = compute(price, rate_bp=rate, mode=mode, buyer_state=buyer, seller_state="29")  # type: ignore[arg-type]
    assert g.taxable_paise + g.tax_paise == g.amount_paise
    assert g.cgst_paise + g.sgst_paise + g.igst_paise == g.tax_paise
    assert min(g.taxable_paise, g.tax_paise, g.cgst_paise, g.sgst_paise, g.igst_paise) >= 0
    if buyer == "29":
        assert g.igst_paise == 0 and abs(g.cgst_paise - g.sgst_paise) <= 1
    else:
        assert g.cgst_paise == g.sgst_paise == 0
    if mode == "inclusive":
        assert g.amount_paise == price
        # The tax is the rate applied to the taxable value, to within half a paisa's rounding.
        assert abs(g.tax_paise * 10_000 - g.taxable_paise * rate) <= 10_000 + rate
    else:
        assert g.taxable_paise == price


def test_gst_on_the_packs() -> None:
    got = {
        p: compute(p, rate_bp=1800, mode="inclusive", buyer_state="29", seller_state="29")
        for p in (15000, 30000, 50000, 100000)
    }
    assert {p: (g.taxable_paise, g.cgst_paise, g.sgst_paise) for p, g in got.items()} == {
        15000: (12712, 1144, 1144),
        30000: (25424, 2288, 2288),
        50000: (42373, 3813, 3814),
        100000: (84746, 7627, 7627),
    }
    igst = compute(30000, rate_bp=1800, mode="inclusive", buyer_state="27", seller_state="29")
    assert (igst.igst_paise, igst.cgst_paise) == (4576, 0)
    with pytest.raises(ValueError):
        compute(0, rate_bp=1800, mode="inclusive", buyer_state="29", seller_state="29")
