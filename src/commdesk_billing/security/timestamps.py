"""Timestamps taken from outside: one rule for every API field, queue payload, cursor and
Cashfree answer that carries a time.

A timestamp must name an instant (it has a UTC offset) inside [2000-01-01, 2100-01-01) UTC,
and it is handed on in UTC. Why a window at all: ISO 8601 and pydantic accept
`0001-01-01T00:00:00+23:59` and `9999-12-31T23:59:59-23:59`, whose UTC instants are in
year 0 and year 10000, which Python's datetime cannot hold. Converting them (asyncpg does, to
send a `timestamptz`; so does any `astimezone` or subtraction) raises OverflowError, a 500
where the caller deserved a 4xx. Why these bounds: nothing we take from outside can
legitimately lie outside them (CommDesk and Cashfree's order API are younger than 2000; an
expiry after 2100 means "never", which is `null`), and they are far enough from Python's
limits that a day of offset either way can never overflow.

Two forms of the one rule:

- `Timestamp` (our API and our queues): a time outside the rule is refused (422, or a dead
  letter);
- `CashfreeTime` (Cashfree's answers and webhooks, `gateway/models.py`): a time outside it
  becomes None. Cashfree's times only inform (when a payment happened), and refusing a
  whole answer for one odd time would stall the payment it reports. A time without an
  offset is read in Indian time, in which Cashfree states all of its times.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, ValidationError, WrapValidator
from pydantic_core.core_schema import ValidatorFunctionWrapHandler

EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)  # excluded
IST = timezone(timedelta(hours=5, minutes=30))

OUTSIDE = "a timestamp must lie in [2000-01-01, 2100-01-01) UTC"


def in_window(value: datetime) -> datetime:
    """`value` in UTC; ValueError if it has no offset or lies outside the window."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("a timestamp needs a UTC offset")
    # An offset is under a day, so a wall-clock year outside 1999..2100 cannot be inside the
    # window: refuse it before converting, which is what would overflow.
    if not EARLIEST.year - 1 <= value.year <= LATEST.year:
        raise ValueError(OUTSIDE)
    utc = value.astimezone(UTC)
    if not EARLIEST <= utc < LATEST:
        raise ValueError(OUTSIDE)
    return utc


def _cashfree_time(value: Any, handler: ValidatorFunctionWrapHandler) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = handler(value)
    except ValidationError:
        return None
    if not isinstance(parsed, datetime):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=IST)
    try:
        return in_window(parsed)
    except ValueError:
        return None


Timestamp = Annotated[AwareDatetime, AfterValidator(in_window)]
CashfreeTime = Annotated[datetime | None, WrapValidator(_cashfree_time)]
