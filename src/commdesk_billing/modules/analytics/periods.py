"""Days and periods: an Indian calendar day (UTC+05:30, no daylight saving), the day GST
returns, invoices' financial year and settlements count in; and the validation of a
`from`/`to` query."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone

from commdesk_billing.errors import InvalidPeriod

IST = timezone(timedelta(hours=5, minutes=30), "IST")

# A per-day series or a report covers at most this many days (a leap year).
MAX_DAYS = 366
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def day_of(at: datetime) -> date:
    """The Indian calendar day an instant falls on."""
    return at.astimezone(IST).date()


def day_start(day: date) -> datetime:
    """The instant a day begins, in UTC."""
    return datetime.combine(day, time(0), IST).astimezone(UTC)


def today() -> date:
    return day_of(datetime.now(UTC))


@dataclass(frozen=True)
class Period:
    """Whole days, `first` through `last` inclusive: [start, end) as instants."""

    first: date
    last: date

    @property
    def start(self) -> datetime:
        return day_start(self.first)

    @property
    def end(self) -> datetime:
        return day_start(self.last + timedelta(days=1))

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1

    def each_day(self) -> list[date]:
        return [self.first + timedelta(days=n) for n in range(self.days)]


def _parse(name: str, value: str | None) -> date:
    if value is None or value == "":
        raise InvalidPeriod(f"`{name}` is required (YYYY-MM-DD)", parameter=name)
    if not _DATE.match(value):
        raise InvalidPeriod(f"`{name}` must be a date, YYYY-MM-DD", parameter=name)
    try:
        parsed = date.fromisoformat(value)
    except ValueError as exc:
        raise InvalidPeriod(f"`{name}` is not a calendar date", parameter=name) from exc
    if parsed.year < 2000:
        raise InvalidPeriod(f"`{name}` is before 2000", parameter=name)
    return parsed


def parse_period(first: str | None, last: str | None, *, max_days: int = MAX_DAYS) -> Period:
    """`from` and `to` (both inclusive, YYYY-MM-DD, Indian days): `from` ≤ `to`, at most
    `max_days` days, and `from` not after today (a period wholly in the future is a typo)."""
    period = Period(_parse("from", first), _parse("to", last))
    if period.first > period.last:
        raise InvalidPeriod("`from` is after `to`", parameter="from")
    if period.days > max_days:
        raise InvalidPeriod(f"the period is {period.days} days; at most {max_days}", parameter="to")
    if period.first > today() + timedelta(days=1):
        raise InvalidPeriod("`from` is in the future", parameter="from")
    return period


def ranges(days: list[date]) -> list[Period]:
    """Sorted days as runs of consecutive days (each run is one indexed range read)."""
    runs: list[Period] = []
    for d in sorted(days):
        if runs and runs[-1].last + timedelta(days=1) == d:
            runs[-1] = Period(runs[-1].first, d)
        else:
            runs.append(Period(d, d))
    return runs
