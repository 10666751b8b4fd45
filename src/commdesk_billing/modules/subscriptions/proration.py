"""What a plan change costs mid-period: exact integers, rounded half up (`money.half_up`).

An upgrade from price P_old to P_new with R of the period's S seconds left is charged
round-half-up((P_new - P_old) * R / S) credits now. A downgrade costs nothing now and
credits nothing back: the cheaper plan takes over at the next renewal (the member keeps
what they paid for until then).
"""

from __future__ import annotations

from datetime import datetime

from commdesk_billing.errors import InvalidAmount
from commdesk_billing.modules.subscriptions.model import whole_seconds
from commdesk_billing.money import half_up


def upgrade_charge(
    old_price: int, new_price: int, *, period_start: datetime, period_end: datetime, at: datetime
) -> int:
    """Credits to charge now for moving to a dearer plan at `at` within the period."""
    if new_price <= old_price:
        raise InvalidAmount("an upgrade is to a dearer plan")
    total = whole_seconds(period_end - period_start)
    if total <= 0:
        raise InvalidAmount("the period has no length")
    remaining = min(max(whole_seconds(period_end - at), 0), total)
    return half_up((new_price - old_price) * remaining, total)
