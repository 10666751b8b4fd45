"""A partner's share of a purchase and what refunds take back of it: pure arithmetic.

- The share of a purchase of taxable value T at `share_bps`: round-half-up(T x bps / 10 000)
  paise, as a community's fee is computed (`communities/fees.py`).
- Refunds take it back *cumulatively*, as `refunds/allocation.py` splits a purchase: after
  refunds of taxable value R in total, round-half-up(S x R / T) of the share S is back, and
  all of S once R reaches T. A refund takes what that figure adds over the refunds before
  it. So partial refunds add up exactly to the whole share, however the purchase is split,
  and never to more.
"""

from __future__ import annotations

from commdesk_billing.money import half_up

MAX_SHARE_BPS = 5000  # 50 %: a partner above this is refused (the columns say so too)


def share_of(taxable_paise: int, share_bps: int) -> int:
    if taxable_paise < 0 or not 0 <= share_bps <= MAX_SHARE_BPS:
        raise ValueError("taxable >= 0 and 0 <= share_bps <= 5000")
    return half_up(taxable_paise * share_bps, 10_000)


def taken_back(share_paise: int, taxable_paise: int, refunded_taxable_paise: int) -> int:
    """How much of the share refunds of `refunded_taxable_paise` in total stand for."""
    if taxable_paise <= 0 or refunded_taxable_paise < 0:
        raise ValueError("a purchase with taxable value, refunds of none or more")
    if refunded_taxable_paise >= taxable_paise:
        return share_paise
    return half_up(share_paise * refunded_taxable_paise, taxable_paise)


def next_reversal(
    share_paise: int,
    taxable_paise: int,
    *,
    before_taxable_paise: int,
    before_share_paise: int,
    refund_taxable_paise: int,
) -> int:
    """What one more refund of `refund_taxable_paise` takes back, given what the refunds
    before it refunded and took. Clamped to what is left of the share: never negative,
    never more than was earned."""
    if refund_taxable_paise < 0:
        raise ValueError("a refund's taxable value is not negative")
    target = taken_back(share_paise, taxable_paise, before_taxable_paise + refund_taxable_paise)
    return max(0, min(share_paise - before_share_paise, target - before_share_paise))
