"""Bytes on the wire: JSON written by hand, IST timestamps, and the sandbox's clock.

Cashfree writes amounts with two decimals (`300.00`), and a webhook receiver verifies the exact
bytes it got, so the sandbox cannot let `json.dumps` turn an amount into `300.0`. Bodies are
built from plain values plus `Money` and serialised here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from commdesk_billing.gateway.amounts import rupees_text

IST = timezone(timedelta(hours=5, minutes=30))


@dataclass(frozen=True, slots=True)
class Money:
    """An amount in paise, written to JSON as rupees with exactly two decimals."""

    paise: int


def dumps(value: Any) -> bytes:
    return _encode(value).encode()


def _encode(value: Any) -> str:
    # bool before int: True is an int in Python and must stay `true` on the wire.
    if value is None or isinstance(value, bool | str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, Money):
        return rupees_text(value.paise)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, float):
        # Not money (a rate or a duration in the control API): plain JSON is fine there.
        return json.dumps(value)
    if isinstance(value, dict):
        items = (f"{json.dumps(str(k), ensure_ascii=False)}:{_encode(v)}" for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_encode(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to the wire")


def loads(body: bytes) -> Any:
    """Parse a request body; numbers with a fraction become Decimal, never float."""
    return json.loads(body, parse_float=Decimal)


def ist_text(moment: datetime) -> str:
    """`2023-08-11T18:02:46+05:30`: Cashfree's timestamp form, seconds precision, IST."""
    return moment.astimezone(IST).replace(microsecond=0).isoformat()


def utc_text(moment: datetime) -> str:
    """`2021-11-24T13:39:25Z`: the Payouts API's timestamp form (UTC, seconds precision)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def ist_local_text(moment: datetime) -> str:
    """`2024-07-25T17:43:37`: Payouts webhooks' `event_time`, IST without an offset."""
    return moment.astimezone(IST).strftime("%Y-%m-%dT%H:%M:%S")


class Clock:
    """Wall time plus an offset that tests can advance (to expire orders without waiting).

    Only the sandbox's business time moves (order expiry, `created_at`, `payment_time`);
    timers and webhook signatures keep to real time.
    """

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)
