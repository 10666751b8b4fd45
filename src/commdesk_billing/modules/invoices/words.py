"""Amounts on a tax document: in words, and in figures with Indian digit grouping.

Style of `amount_in_words` (one style everywhere, so a reader never sees two spellings):

- Indian numbering: hundred, thousand, lakh (1,00,000), crore (1,00,00,000). Above 99 crore the
  crore count is itself spelled in the same system, so 100 crore is "One Hundred Crore",
  1,000 crore "One Thousand Crore" and 1,00,000 crore "One Lakh Crore".
- Every word capitalised; tens and units joined by a hyphen ("Twenty-Three"); no "and" inside the
  rupee figure ("One Hundred One", not "One Hundred and One").
- Always "Rupees" first, even for one rupee: it labels the currency, as on a cheque.
- Paise, when there are any, follow as "and Fifty Paise" ("and One Paisa" for exactly one); a
  whole-rupee amount says nothing about paise.
- Always "Only" last. Zero is "Rupees Zero Only"; less than a rupee is "Rupees Zero and Fifty
  Paise Only".

`rupees` gives figures as "1,23,456.78": Indian grouping, always two decimals, a leading minus
for negatives, and no currency sign (the core PDF fonts cannot draw the rupee sign; the caller
prints "Rs." or "INR").
"""

from __future__ import annotations

_UNITS = (
    "Zero",
    "One",
    "Two",
    "Three",
    "Four",
    "Five",
    "Six",
    "Seven",
    "Eight",
    "Nine",
    "Ten",
    "Eleven",
    "Twelve",
    "Thirteen",
    "Fourteen",
    "Fifteen",
    "Sixteen",
    "Seventeen",
    "Eighteen",
    "Nineteen",
)
_TENS = ("", "", "Twenty", "Thirty", "Forty", "Fifty", "Sixty", "Seventy", "Eighty", "Ninety")

_CRORE = 10_000_000
_LAKH = 100_000
_THOUSAND = 1_000


def _check_paise(paise: object) -> int:
    # bool is an int subclass; True paise is a bug upstream, not one paisa.
    if isinstance(paise, bool) or not isinstance(paise, int):
        raise ValueError("amount must be a whole number of paise")
    return paise


def _below_hundred(n: int) -> str:
    if n < 20:
        return _UNITS[n]
    tens, units = divmod(n, 10)
    return _TENS[tens] if units == 0 else f"{_TENS[tens]}-{_UNITS[units]}"


def _spell(n: int) -> list[str]:
    """Words for 1 <= n, without "Zero" parts."""
    words: list[str] = []
    crores, n = divmod(n, _CRORE)
    if crores:
        # Recursing keeps the count going past 99 crore ("One Thousand Crore") instead of
        # switching to arab / kharab, which few readers of an invoice would recognise.
        words += [*_spell(crores), "Crore"]
    lakhs, n = divmod(n, _LAKH)
    if lakhs:
        words += [_below_hundred(lakhs), "Lakh"]
    thousands, n = divmod(n, _THOUSAND)
    if thousands:
        words += [_below_hundred(thousands), "Thousand"]
    hundreds, n = divmod(n, 100)
    if hundreds:
        words += [_UNITS[hundreds], "Hundred"]
    if n:
        words.append(_below_hundred(n))
    return words


def amount_in_words(paise: int) -> str:
    """'Rupees One Lakh Twenty Thousand and Fifty Paise Only' for 1,20,000.50 rupees."""
    paise = _check_paise(paise)
    if paise < 0:
        raise ValueError("amount in words is for non-negative amounts")
    whole, fraction = divmod(paise, 100)
    words = ["Rupees", *(_spell(whole) if whole else ["Zero"])]
    if fraction:
        words += ["and", _below_hundred(fraction), "Paisa" if fraction == 1 else "Paise"]
    words.append("Only")
    return " ".join(words)


def indian_grouping(n: int) -> str:
    """'12,34,567' for 1234567: the last three digits, then pairs. Non-negative ints only."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError("grouping is for non-negative whole numbers")
    digits = str(n)
    head, tail = digits[:-3], digits[-3:]
    pairs: list[str] = []
    while head:
        pairs.insert(0, head[-2:])
        head = head[:-2]
    return ",".join([*pairs, tail])


def rupees(paise: int) -> str:
    """'1,23,456.78' for 12345678 paise; '-5.00' for -500."""
    paise = _check_paise(paise)
    sign = "-" if paise < 0 else ""
    whole, fraction = divmod(abs(paise), 100)
    return f"{sign}{indian_grouping(whole)}.{fraction:02d}"
