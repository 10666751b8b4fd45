"""Rupee amounts on Cashfree's wire <-> integer paise in our books.

Cashfree speaks rupees as JSON numbers with up to two decimals. We never let a float near money:
parse numbers as `Decimal` and refuse anything that is not a whole number of paise.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation


class AmountError(ValueError):
    pass


def to_paise(value: object) -> int:
    """`300`, `300.0`, `"300.00"` or Decimal('300.00') -> 30000. Refuses fractions of a paisa."""
    if isinstance(value, bool):
        raise AmountError(f"not an amount: {value!r}")
    try:
        amount = value if isinstance(value, Decimal) else Decimal(str(value))
    except (InvalidOperation, ValueError) as exc:
        raise AmountError(f"not an amount: {value!r}") from exc
    if not amount.is_finite():
        raise AmountError(f"not an amount: {value!r}")
    try:
        paise = amount * 100
    except ArithmeticError as exc:
        # `1e999999` is a finite Decimal whose paise overflow the context: refused like any
        # other non-amount (a ValueError, which the tolerant models turn into a refusal),
        # never an exception nobody expects.
        raise AmountError(f"not an amount: {str(value)[:40]}") from exc
    if paise != paise.to_integral_value():
        raise AmountError(f"amount has fractions of a paisa: {value!r}")
    return int(paise)


def to_rupees(paise: int) -> Decimal:
    """30000 -> Decimal('300.00'), for building request bodies."""
    return (Decimal(paise) / 100).quantize(Decimal("0.01"))


def rupees_text(paise: int) -> str:
    """30000 -> "300.00": the exact text Cashfree puts in JSON bodies it signs."""
    sign = "-" if paise < 0 else ""
    whole, frac = divmod(abs(paise), 100)
    return f"{sign}{whole}.{frac:02d}"
