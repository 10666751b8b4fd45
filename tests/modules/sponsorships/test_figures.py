"""A sponsorship refund's parts of the fee and GST (`figures.refund_figures`), over
histories the end-to-end tests cannot order on purpose."""

from __future__ import annotations

from typing import Any

from commdesk_billing.modules.sponsorships.figures import figures, refund_figures


def test_parts_after_a_refund_that_was_not_made_are_never_negative() -> None:
    amount = 100_000
    fee = figures(amount, fee_bps=500, gst_rate_bp=1800, buyer_state="29", seller_state="29")

    def refund(escrow_before: int, before: tuple[int, int, int, int], escrow: int) -> Any:
        return refund_figures(
            amount_paise=amount,
            fee_paise=fee.fee_paise,
            cgst_paise=fee.fee.cgst_paise,
            sgst_paise=fee.fee.sgst_paise,
            igst_paise=fee.fee.igst_paise,
            escrow_before=escrow_before,
            before=before,
            escrow=escrow,
        )

    def parts(r: Any) -> tuple[int, int, int, int]:
        return (r.fee_paise, r.cgst_paise, r.sgst_paise, r.igst_paise)

    # Milestones of 2, 8, 1 and the rest. A refund of the first (0 fee) is standing when a
    # refund of the second is asked for (cumulative 10 paise: 1 of fee), then Cashfree
    # cancels the first. A refund of the third then stands after the second alone.
    first = refund(0, (0, 0, 0, 0), 2)
    second = refund(2, parts(first), 8)
    assert parts(second)[0] == 1
    third = refund(8, parts(second), 1)
    assert min(parts(third)) >= 0, third
    assert third.amount_paise >= third.escrow_paise
    # Whatever the order, refunding everything that is left returns the whole fee and GST.
    standing = [second, third]
    taken = tuple(sum(p) for p in zip(*(parts(r) for r in standing), strict=True))
    rest = refund(9, taken, amount - 9)
    total = tuple(a + b for a, b in zip(taken, parts(rest), strict=True))
    assert total == (
        fee.fee_paise,
        fee.fee.cgst_paise,
        fee.fee.sgst_paise,
        fee.fee.igst_paise,
    )
    assert min(parts(rest)) >= 0
