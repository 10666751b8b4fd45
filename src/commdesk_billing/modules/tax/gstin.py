"""GSTIN: the 15-character GST identification number of a registered business.

    SS PPPPPNNNNP E Z C
    │  │          │ │ └ check character (mod-36 Luhn over the first 14)
    │  │          │ └── "Z" by default
    │  │          └──── entity number for the PAN in the state (1-9, then A-Z)
    │  └─────────────── the holder's PAN: 5 letters, 4 digits, a letter
    └────────────────── the GST state code of the registration (01-38, 97)

A GSTIN that passes here is well formed, not proven registered: only the GST portal knows
that. It is enough to catch a mistyped number before it is printed on a tax invoice.
"""

from __future__ import annotations

import re

_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_SHAPE = re.compile(r"^(0[1-9]|[12][0-9]|3[0-8]|97)[A-Z]{5}[0-9]{4}[A-Z][1-9A-Z]Z[0-9A-Z]$")


def check_character(first14: str) -> str:
    """The 15th character: each of the first 14 weighted 1, 2, 1, 2…; each product's base-36
    digits summed; the check is what brings the sum to a multiple of 36."""
    total = 0
    for position, char in enumerate(first14):
        product = _ALPHABET.index(char) * (2 if position % 2 else 1)
        total += product // 36 + product % 36
    return _ALPHABET[(36 - total % 36) % 36]


def problem(gstin: str) -> str | None:
    """Why `gstin` is not a valid GSTIN, or None when it is."""
    if len(gstin) != 15:
        return "a GSTIN is 15 characters"
    if not _SHAPE.match(gstin):
        return (
            "a GSTIN is a state code (01-38 or 97), a PAN (5 letters, 4 digits, a letter), an "
            "entity number, Z and a check character, in capitals"
        )
    if check_character(gstin[:14]) != gstin[14]:
        return "the GSTIN's check character does not match: a character is mistyped"
    return None


def state_of(gstin: str) -> str:
    """The GST state code a (valid) GSTIN is registered in."""
    return gstin[:2]
