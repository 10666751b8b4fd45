"""How much of a purchase a refund stands for: paise, tax and credits, in whole units.

Every figure is *cumulative*: the shares that R paise refunded in total stand for are a
function of R alone (`cumulative`), and a refund is what that function adds over the refunds
still standing (`next_refund`). So partial refunds add up exactly to a full one — taxable
value, CGST/SGST/IGST and credits all land on the purchase's own figures, never a paisa or a
credit over — however the total is split.

- Taxable value of R paise: R * taxable / paid, half-up (as the invoice's own division);
  the tax is the rest, split CGST/SGST in the invoice's proportion, CGST rounded down as on
  the invoice (IGST takes it all).
- Credits taken back for R paise: ceil(R * credits / paid), base and bonus alike. Rounding up
  means a buyer never keeps a credit whose money came back; at R = paid it is exactly the
  credits granted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, replace

from commdesk_billing.money import half_up


def _ceil(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


@dataclass(frozen=True)
class Parts:
    """A refund's share of a purchase (or the sum of several refunds' shares)."""

    amount_paise: int = 0
    taxable_paise: int = 0
    cgst_paise: int = 0
    sgst_paise: int = 0
    igst_paise: int = 0
    base_credits: int = 0
    bonus_credits: int = 0

    @property
    def tax_paise(self) -> int:
        return self.cgst_paise + self.sgst_paise + self.igst_paise

    @property
    def credits(self) -> int:
        return self.base_credits + self.bonus_credits

    def __add__(self, other: Parts) -> Parts:
        return Parts(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))


@dataclass(frozen=True)
class Purchase:
    """What the buyer paid and was granted: the payment's own figures."""

    amount_paise: int
    taxable_paise: int
    cgst_paise: int
    sgst_paise: int
    igst_paise: int
    base_credits: int
    bonus_credits: int

    def __post_init__(self) -> None:
        if self.amount_paise <= 0 or self.base_credits <= 0 or self.bonus_credits < 0:
            raise ValueError("a purchase pays something and grants base credits")
        tax = self.cgst_paise + self.sgst_paise + self.igst_paise
        if (
            self.taxable_paise + tax != self.amount_paise
            or min(self.taxable_paise, self.cgst_paise, self.sgst_paise, self.igst_paise) < 0
        ):
            raise ValueError("taxable value + tax is not the amount paid")


def cumulative(p: Purchase, refunded_paise: int) -> Parts:
    """The shares of the purchase that `refunded_paise` refunded in total stand for."""
    if not 0 <= refunded_paise <= p.amount_paise:
        raise ValueError("refunded total must be between 0 and the amount paid")
    r = refunded_paise
    taxable = half_up(r * p.taxable_paise, p.amount_paise)
    tax = r - taxable
    invoice_tax = p.cgst_paise + p.sgst_paise + p.igst_paise
    if p.igst_paise:
        cgst, sgst, igst = 0, 0, tax
    elif invoice_tax:
        # Rounded down, as the invoice's own CGST: the odd paisa goes to SGST on both.
        cgst = tax * p.cgst_paise // invoice_tax
        sgst, igst = tax - cgst, 0
    else:  # zero-rated: taxable == paid, so `tax` is 0
        cgst, sgst, igst = 0, 0, 0
    return Parts(
        amount_paise=r,
        taxable_paise=taxable,
        cgst_paise=cgst,
        sgst_paise=sgst,
        igst_paise=igst,
        base_credits=_ceil(r * p.base_credits, p.amount_paise),
        bonus_credits=_ceil(r * p.bonus_credits, p.amount_paise),
    )


def next_refund(p: Purchase, standing: Parts, amount_paise: int) -> Parts:
    """A new refund of `amount_paise`, given the refunds still standing (requested or done;
    not failed). Its parts are what the cumulative figures add on top of those."""
    if amount_paise <= 0 or standing.amount_paise + amount_paise > p.amount_paise:
        raise ValueError("refund must be positive and within what is left of the payment")
    target = cumulative(p, standing.amount_paise + amount_paise)

    def gap(get: Callable[[Parts], int], cap: int) -> int:
        # Clamped: a failed refund between two standing ones can leave the standing sum a
        # paisa off the curve; a part is never negative nor more than its whole.
        return max(0, min(cap, get(target) - get(standing)))

    taxable = gap(lambda x: x.taxable_paise, amount_paise)
    tax = amount_paise - taxable
    if p.igst_paise:
        cgst, sgst, igst = 0, 0, tax
    elif p.cgst_paise or p.sgst_paise:
        cgst = gap(lambda x: x.cgst_paise, tax)
        sgst, igst = tax - cgst, 0
    else:
        # Zero-rated: all of it is taxable value.
        taxable, cgst, sgst, igst = amount_paise, 0, 0, 0
    return Parts(
        amount_paise=amount_paise,
        taxable_paise=taxable,
        cgst_paise=cgst,
        sgst_paise=sgst,
        igst_paise=igst,
        base_credits=gap(lambda x: x.base_credits, p.base_credits - standing.base_credits),
        bonus_credits=gap(lambda x: x.bonus_credits, p.bonus_credits - standing.bonus_credits),
    )


@dataclass(frozen=True)
class Room:
    """What a refund can take back right now."""

    base_drawable: int  # unconsumed, unreserved credits of the purchase lot
    bonus_drawable: int  # same for its bonus lot (0 when there is none)
    available: int  # the wallet's available credits (spend holds take from this)


def fits(parts: Parts, room: Room) -> bool:
    return (
        parts.base_credits <= room.base_drawable
        and parts.bonus_credits <= room.bonus_drawable
        and parts.credits <= room.available
    )


def refundable(p: Purchase, standing: Parts, room: Room) -> int:
    """The largest amount (paise) a new refund can be for: every credit it takes back must
    still be in the wallet, unconsumed, unreserved and not under a spend hold. Parts grow
    with the amount, so the largest fitting amount is found by bisection."""
    lo, hi = 0, p.amount_paise - standing.amount_paise
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(next_refund(p, standing, mid), room):
            lo = mid
        else:
            hi = mid - 1
    return lo


@dataclass(frozen=True)
class Service:
    """A payment that bought a service, not credits (an INR subscription period): its own
    figures, GST-inclusive."""

    amount_paise: int
    taxable_paise: int
    cgst_paise: int
    sgst_paise: int
    igst_paise: int


def next_service_refund(s: Service, standing: Parts, amount_paise: int) -> Parts:
    """A refund of `amount_paise` of a service payment: the purchase's cumulative split of
    taxable value and tax (partial refunds add up to the invoice exactly), no credits. One
    base credit stands in for the credits it has none of, and its share is dropped: the tax
    arithmetic is `next_refund`'s, unchanged."""
    p = Purchase(
        amount_paise=s.amount_paise,
        taxable_paise=s.taxable_paise,
        cgst_paise=s.cgst_paise,
        sgst_paise=s.sgst_paise,
        igst_paise=s.igst_paise,
        base_credits=1,
        bonus_credits=0,
    )
    moneys = Parts(
        amount_paise=standing.amount_paise,
        taxable_paise=standing.taxable_paise,
        cgst_paise=standing.cgst_paise,
        sgst_paise=standing.sgst_paise,
        igst_paise=standing.igst_paise,
    )
    return replace(next_refund(p, moneys, amount_paise), base_credits=0, bonus_credits=0)
