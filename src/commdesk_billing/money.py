"""The arithmetic every money rule shares: integer division rounded half up, and how a rate
in basis points is shown. Integers only (paise, credits, bps): no float near money."""

from __future__ import annotations


def half_up(numerator: int, denominator: int) -> int:
    """numerator / denominator rounded half up, for a non-negative numerator and a positive
    denominator (DESIGN §3, §10: fees, shares, recognized basis, refund parts)."""
    return (2 * numerator + denominator) // (2 * denominator)


def rate_text(bps: int) -> str:
    """1000 -> "10.00%": a rate as a receipt or a statement shows it."""
    return f"{bps // 100}.{bps % 100:02d}%"
