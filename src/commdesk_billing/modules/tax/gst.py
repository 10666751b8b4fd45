"""GST on credit purchases, in integer paise.

Rules (DESIGN §3): 18 % GST; CGST 9 % + SGST 9 % when the buyer's state is ours, IGST 18 %
otherwise. With inclusive pricing (the default) the buyer pays exactly the listed price and the
tax is carved out of it; with exclusive pricing the tax is added on top. Either way
taxable + tax = amount paid, to the paisa, and CGST + SGST = tax.

Rounding is half-up to the paisa on the one figure computed by division; the other figures are
differences, so nothing can be lost or invented. The tax point (purchase, by default) is the
caller's choice: this module only says how much.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

GstMode = Literal["inclusive", "exclusive"]


@dataclass(frozen=True)
class GstBreakdown:
    amount_paise: int  # what the buyer pays
    taxable_paise: int
    tax_paise: int
    cgst_paise: int
    sgst_paise: int
    igst_paise: int
    rate_bp: int
    mode: GstMode
    intra_state: bool


def _div_half_up(numerator: int, denominator: int) -> int:
    return (2 * numerator + denominator) // (2 * denominator)


def compute(
    price_paise: int,
    *,
    rate_bp: int,
    mode: GstMode,
    buyer_state: str,
    seller_state: str,
) -> GstBreakdown:
    """`price_paise` is the listed price: tax-inclusive or tax-exclusive as `mode` says."""
    if isinstance(price_paise, bool) or not isinstance(price_paise, int) or price_paise <= 0:
        raise ValueError("price must be a positive whole number of paise")
    if not 0 <= rate_bp <= 10_000:
        raise ValueError("GST rate must be between 0 and 100 %")
    if mode == "inclusive":
        amount = price_paise
        taxable = _div_half_up(amount * 10_000, 10_000 + rate_bp)
    else:
        taxable = price_paise
        amount = taxable + _div_half_up(taxable * rate_bp, 10_000)
    tax = amount - taxable
    intra = buyer_state == seller_state
    if intra:
        # Half each; the odd paisa (if any) goes to SGST, so the two always add up.
        cgst = tax // 2
        sgst, igst = tax - cgst, 0
    else:
        cgst, sgst, igst = 0, 0, tax
    return GstBreakdown(
        amount_paise=amount,
        taxable_paise=taxable,
        tax_paise=tax,
        cgst_paise=cgst,
        sgst_paise=sgst,
        igst_paise=igst,
        rate_bp=rate_bp,
        mode=mode,
        intra_state=intra,
    )
