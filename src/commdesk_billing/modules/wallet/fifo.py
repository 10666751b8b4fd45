"""FIFO draw over credit lots (DESIGN §3): pure arithmetic, property-tested."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class LotBalance:
    lot_id: uuid.UUID
    remaining: int  # drawable: what is left, less what a refund in flight reserved
    # For revenue recognition (recognition.py): every credit left, reserved ones included,
    # and the basis not yet recognized or refunded.
    total: int = 0
    unrecognized: int = 0


def allocate_fifo(lots: Sequence[LotBalance], credits: int) -> list[tuple[uuid.UUID, int]]:
    """Take `credits` from `lots` in the order given (already FIFO-sorted by the caller).

    Returns (lot, credits taken) for each lot drawn from. Raises ValueError when the lots
    cannot cover the amount: the caller checks the balance first, so that is a broken
    invariant (lots out of step with the wallet row), not a user error.
    """
    if credits <= 0:
        raise ValueError("credits to allocate must be positive")
    taken: list[tuple[uuid.UUID, int]] = []
    left = credits
    for lot in lots:
        if left == 0:
            break
        if lot.remaining <= 0:
            continue
        take = min(lot.remaining, left)
        taken.append((lot.lot_id, take))
        left -= take
    if left:
        raise ValueError(f"lots cover only {credits - left} of {credits} credits")
    return taken
