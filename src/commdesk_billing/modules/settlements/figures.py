"""A settlement's arithmetic (DESIGN §11), pure: from what the payee's payable holds to what
Cashfree pays. Integers only, each rate rounded half up (`money.half_up`).

    available = payable - reserves still held
    reserve   = available x reserve_bps          (stays in payable until reserve_until)
    gross     = available - reserve               (leaves payable)
    TDS       = gross x tds_bps                   (income-tax, section 194-O)
    TCS       = gross x tcs_bps                   (GST, section 52)
    net       = gross - TDS - TCS - fee           (paid; below the minimum: wait)
"""

from __future__ import annotations

from dataclasses import dataclass

from commdesk_billing.modules.settlements.model import Figures, Terms
from commdesk_billing.money import half_up

__all__ = ["BPS", "Figures", "Waiting", "settle"]

BPS = 10_000


@dataclass(frozen=True)
class Waiting:
    """Nothing is settled now, and why (nothing is posted either)."""

    reason: str
    available_paise: int
    net_paise: int = 0


def settle(payable_paise: int, reserves_held_paise: int, terms: Terms) -> Figures | Waiting:
    available = payable_paise - reserves_held_paise
    if available <= 0:
        # A payable at or below zero is a receivable (a reversal after a settlement): it is
        # netted from what the payee earns next, never paid.
        return Waiting("nothing_payable", available)
    reserve = half_up(available * terms.reserve_bps, BPS)
    gross = available - reserve
    tds = half_up(gross * terms.tds_bps, BPS)
    tcs = half_up(gross * terms.tcs_bps, BPS)
    net = gross - tds - tcs - terms.fee_paise
    if gross <= 0 or net < terms.minimum_paise:
        return Waiting("below_minimum", available, net)
    return Figures(
        payable_paise=payable_paise,
        reserves_held_paise=reserves_held_paise,
        reserve_paise=reserve,
        gross_paise=gross,
        tds_paise=tds,
        tcs_paise=tcs,
        fee_paise=terms.fee_paise,
        net_paise=net,
    )
