"""What a sponsorship costs the sponsor (DESIGN §11), in integer paise.

The sponsor pledges `amount` to the community; the community's part is all of it (the
milestones add up to it). The platform's fee is round-half-up(amount x fee_bps / 10 000)
and is charged on top, with GST on the fee on top of that (exclusive: the fee is the
taxable value of our supply to the sponsor, who gets the tax invoice):

    total = amount + fee + GST(fee)

Why on top: the fee is a service to the sponsor (it is invoiced to them), so the community
receives exactly what was pledged, and the figures a community sees never depend on our
rates. The GST split (CGST+SGST or IGST) follows the sponsor's state, as for purchases.
"""

from __future__ import annotations

from dataclasses import dataclass

from commdesk_billing.modules.tax.gst import GstBreakdown, compute
from commdesk_billing.money import half_up


@dataclass(frozen=True)
class Figures:
    amount_paise: int  # the community's part, held in escrow
    fee_bps: int
    fee: GstBreakdown  # the fee (taxable) and its GST

    @property
    def fee_paise(self) -> int:
        return self.fee.taxable_paise

    @property
    def gst_paise(self) -> int:
        return self.fee.tax_paise

    @property
    def total_paise(self) -> int:
        return self.amount_paise + self.fee.amount_paise


def fee_of(amount_paise: int, fee_bps: int) -> int:
    return half_up(amount_paise * fee_bps, 10_000)


def figures(
    amount_paise: int, *, fee_bps: int, gst_rate_bp: int, buyer_state: str, seller_state: str
) -> Figures:
    fee = fee_of(amount_paise, fee_bps)
    if fee <= 0:
        raise ValueError("a sponsorship's fee must be at least a paisa")
    gst = compute(
        fee,
        rate_bp=gst_rate_bp,
        mode="exclusive",
        buyer_state=buyer_state,
        seller_state=seller_state,
    )
    return Figures(amount_paise=amount_paise, fee_bps=fee_bps, fee=gst)


@dataclass(frozen=True)
class RefundFigures:
    """One refund of a sponsorship: the escrow it returns and the fee and GST that go with
    it. amount = escrow + fee + cgst + sgst + igst."""

    escrow_paise: int
    fee_paise: int
    cgst_paise: int
    sgst_paise: int
    igst_paise: int

    @property
    def amount_paise(self) -> int:
        return (
            self.escrow_paise + self.fee_paise + self.cgst_paise + self.sgst_paise + self.igst_paise
        )


def refund_figures(
    *,
    amount_paise: int,
    fee_paise: int,
    cgst_paise: int,
    sgst_paise: int,
    igst_paise: int,
    escrow_before: int,
    before: tuple[int, int, int, int],
    escrow: int,
) -> RefundFigures:
    """The refund of `escrow` paise of a sponsorship of `amount_paise` (its fee and GST
    parts as paid), after earlier standing refunds that returned `escrow_before` with
    `before` = (fee, cgst, sgst, igst). Each part is cumulative: round-half-up(part x
    escrow refunded so far / amount) less what earlier refunds took, so any sequence of
    refunds adds up to the whole fee and GST exactly when the whole amount is returned, and
    never more.

    Never less than 0 either: after a refund that was not made (CANCELLED), the standing
    ones may have taken a paisa more than their own escrow now rounds to (it was rounded
    with the cancelled one's), and the next small refund then takes none rather than give
    one back. The whole is still reached exactly by the refund that returns the rest."""
    if not 0 < escrow <= amount_paise - escrow_before:
        raise ValueError("a refund returns some escrow, and no more than is left")
    so_far = escrow_before + escrow
    parts = [
        max(0, half_up(whole * so_far, amount_paise) - taken)
        for whole, taken in zip(
            (fee_paise, cgst_paise, sgst_paise, igst_paise), before, strict=True
        )
    ]
    fee, cgst, sgst, igst = parts
    return RefundFigures(escrow, fee, cgst, sgst, igst)
