"""The arithmetic of rating, pure integers (DESIGN §3: no float, no Decimal).

Prices are in milli-credits per unit, so a meter may cost a fraction of a credit per unit
(1 500 = 1.5 credits). Tiers are graduated within a wallet's meter and calendar month
(UTC): the n-th unit rated in the month costs the price of the tier n falls in, under the
price version in force when its event occurred. An event's exact cost is
`cost(U + q) - cost(U)` milli-credits, U the units rated before it in the month.

Wallets hold whole credits, so the month's running total M (milli-credits) is what is
rounded: after an event the month has been charged round-half-up(M / 1000) credits, and the
event is charged the difference from before it. The sum of a month's event credits is
therefore round-half-up(Σ milli-credits / 1000) however the usage was split into events:
1 000 events of one unit cost what one event of 1 000 units costs.
"""

from __future__ import annotations

from collections.abc import Sequence

from commdesk_billing.modules.usage.model import Tier
from commdesk_billing.money import half_up

MILLI = 1000
MAX_TIERS = 20
MAX_QUANTITY = 10**9
# 10 000 credits a unit: with MAX_QUANTITY a single event stays far inside bigint.
MAX_MILLICREDITS_PER_UNIT = 10**7


def check_tiers(tiers: Sequence[Tier]) -> None:
    """ValueError unless `tiers` is 1..20 tiers with strictly rising bounds, the last open."""
    if not 1 <= len(tiers) <= MAX_TIERS:
        raise ValueError(f"a price has 1 to {MAX_TIERS} tiers")
    previous = 0
    for i, tier in enumerate(tiers):
        if not 0 <= tier.millicredits_per_unit <= MAX_MILLICREDITS_PER_UNIT:
            raise ValueError(
                f"millicredits_per_unit must be between 0 and {MAX_MILLICREDITS_PER_UNIT}"
            )
        last = i == len(tiers) - 1
        if last != (tier.up_to is None):
            raise ValueError("every tier but the last has up_to; the last has none")
        if tier.up_to is not None:
            if tier.up_to <= previous:
                raise ValueError("tier bounds must rise strictly from 1")
            previous = tier.up_to


def cost(tiers: Sequence[Tier], units: int) -> int:
    """Milli-credits the first `units` units of a month cost under `tiers`."""
    total, lower = 0, 0
    for tier in tiers:
        upper = units if tier.up_to is None else min(units, tier.up_to)
        if upper > lower:
            total += (upper - lower) * tier.millicredits_per_unit
        if tier.up_to is None or units <= tier.up_to:
            break
        lower = tier.up_to
    return total


def event_millicredits(tiers: Sequence[Tier], units_before: int, quantity: int) -> int:
    """What `quantity` units cost after `units_before` units of the month were rated."""
    return cost(tiers, units_before + quantity) - cost(tiers, units_before)


def credits_charged(millicredits_total: int) -> int:
    """Whole credits a month's running total of milli-credits has been charged."""
    return half_up(millicredits_total, MILLI)


def event_credits(millicredits_before: int, millicredits: int) -> int:
    """Credits an event of `millicredits` costs after `millicredits_before` in its month."""
    return credits_charged(millicredits_before + millicredits) - credits_charged(
        millicredits_before
    )
