"""Revenue recognized at consumption (DESIGN §10): how much cost basis a draw carries.

Pure arithmetic, property-tested. A lot with R credits remaining (reserved ones included:
they are still the lot's) and U paise of basis not yet recognized gives, for k of them,
round-half-up(U * k / R) — and U itself when k = R, so that over a lot's life what was
recognized and what was refunded add up to its taxable value to the paisa. The rule looks
only at the lot's running U and R, so many small draws and one big one end in the same
place, and no remainder is ever dropped or counted twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace

from commdesk_billing.modules.wallet.fifo import LotBalance, allocate_fifo
from commdesk_billing.money import half_up


def share(unrecognized: int, remaining: int, credits: int) -> int:
    """The basis `credits` of a lot's `remaining` carry, when `unrecognized` is left."""
    if not 0 < credits <= remaining:
        raise ValueError(f"cannot draw {credits} of {remaining} remaining credits")
    if unrecognized < 0:
        raise ValueError("a lot's unrecognized basis is never negative")
    if credits == remaining:
        return unrecognized
    return half_up(unrecognized * credits, remaining)


@dataclass(frozen=True)
class Draw:
    lot_id: uuid.UUID
    credits: int
    basis_paise: int


def draw(lots: Sequence[LotBalance], credits: int) -> tuple[list[Draw], list[LotBalance]]:
    """FIFO-draw `credits` from `lots` with the basis each part carries; the lots after."""
    by_id = {lot.lot_id: lot for lot in lots}
    draws: list[Draw] = []
    for lot_id, taken in allocate_fifo(lots, credits):
        lot = by_id[lot_id]
        basis = share(lot.unrecognized, lot.total, taken)
        by_id[lot_id] = replace(
            lot,
            remaining=lot.remaining - taken,
            total=lot.total - taken,
            unrecognized=lot.unrecognized - basis,
        )
        draws.append(Draw(lot_id, taken, basis))
    return draws, [by_id[lot.lot_id] for lot in lots]


def basis_of(draws: Sequence[Draw]) -> int:
    return sum(d.basis_paise for d in draws)
