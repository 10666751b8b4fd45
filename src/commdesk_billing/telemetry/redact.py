"""What must never leave the process in a log line or an error report: secrets, tokens,
card numbers, bank accounts and UPI addresses.

Two nets, because neither alone is enough: by key (`authorization`, `client_secret`,
`card_number`, `account_number`, `vpa`, ... anywhere in a nested structure, the value
replaced whole), and by the look of a value wherever it stands (a bearer token, a JWT, a
URL's password, a 12-19 digit run that passes the Luhn check, a UPI address), for what a
message or an exception text carries in passing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

REDACTED = "[REDACTED]"

_SENSITIVE_KEY = re.compile(
    r"authorization|secret|passw|token|cookie|api_?key|access_?key|private_?key|signing_?key"
    r"|credential|signature|dsn|card_?number|card_?no|\bpan\b|cvv|cvc|account_?number"
    r"|account_?no|bank_?account|\bupi|vpa|ifsc"
)

# Each pattern runs only where a cheap test says it could match (most text has none of it).
_SCHEME = re.compile(r"\b([Bb]earer|[Bb]asic)(\s+)[A-Za-z0-9._~+/=-]{6,}")  # "Bearer <token>"
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
_USERINFO = re.compile(r"(://[^/\s:@]+:)[^/\s@]+@")  # scheme://user:password@host
# 12-19 digits, maybe grouped by spaces or dashes (a card number if it passes Luhn)
_DIGITS = re.compile(r"(?<![\d])\d(?:[ -]?\d){11,18}(?![\d])")
# a UPI address (handle@psp); an email's domain has a dot, a PSP's never does
_VPA = re.compile(r"\b[A-Za-z0-9][A-Za-z0-9._-]{1,255}@[A-Za-z][A-Za-z0-9]{1,63}\b(?![.@\w-])")


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _card(match: re.Match[str]) -> str:
    digits = match[0].replace(" ", "").replace("-", "")
    return REDACTED if _luhn(digits) else match[0]


@lru_cache(maxsize=4096)
def sensitive_key(key: str) -> bool:
    # Cached: the same few hundred keys come by on every line.
    return _SENSITIVE_KEY.search(key.lower().replace("-", "_")) is not None


# Fields our own processors write (never from outside): not worth a scan on every line.
_OURS = frozenset({"timestamp", "level", "service", "env", "trace_id", "span_id", "logger"})


def text(value: str) -> str:
    """`value` with every secret-looking part replaced."""
    if "earer" in value or "asic" in value:
        value = _SCHEME.sub(rf"\1\2{REDACTED}", value)
    if "eyJ" in value:
        value = _JWT.sub(REDACTED, value)
    if "://" in value:
        value = _USERINFO.sub(rf"\1{REDACTED}@", value)
    if len(value) >= 12:
        value = _DIGITS.sub(_card, value)
    if "@" in value:
        value = _VPA.sub(REDACTED, value)
    return value


def scrub(value: Any, depth: int = 0) -> Any:
    """A copy of `value` (dicts, lists, tuples, strings nested in them) with what is
    sensitive replaced; numbers and None as they are, any other object as its text."""
    if isinstance(value, str):
        return text(value)
    if depth > 20:  # deeper than anything we log: cut rather than walk
        return REDACTED
    if isinstance(value, Mapping):
        return {
            k: (
                v
                if depth == 0 and k in _OURS
                else REDACTED
                if isinstance(k, str) and sensitive_key(k) and v is not None
                else scrub(v, depth + 1)
            )
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return type(value)(scrub(v, depth + 1) for v in value)
    if isinstance(value, bytes | bytearray):
        return text(bytes(value).decode("utf-8", "replace"))
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**11:
        return REDACTED if text(str(abs(value))) == REDACTED else value
    if value is None or isinstance(value, bool | int | float):
        return value
    # Anything else (an exception, a UUID, a model) as the text a renderer would write.
    return text(str(value))
