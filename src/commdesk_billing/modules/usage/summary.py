"""A wallet's usage per meter and period, read from the aggregates the batches keep."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.modules.usage import repository as repo
from commdesk_billing.modules.usage.model import Debt, Granularity, PeriodFigures

# A day summary spans at most this many days, a month summary this many months.
MAX_DAYS = 366
MAX_MONTHS = 120


@dataclass(frozen=True)
class Summary:
    wallet_id: uuid.UUID
    granularity: Granularity
    first: date
    last: date
    periods: list[PeriodFigures]
    debts: list[Debt]


def window(granularity: Granularity, first: date, last: date) -> tuple[date, date]:
    """The periods' starts from `first` to `last` inclusive; ValueError when too long."""
    if last < first:
        raise ValueError("to must not be before from")
    if granularity is Granularity.month:
        first, last = first.replace(day=1), last.replace(day=1)
        months = (last.year - first.year) * 12 + last.month - first.month + 1
        if months > MAX_MONTHS:
            raise ValueError(f"a month summary spans at most {MAX_MONTHS} months")
    elif (last - first).days + 1 > MAX_DAYS:
        raise ValueError(f"a day summary spans at most {MAX_DAYS} days")
    return first, last


async def read(
    conn: AsyncConnection,
    *,
    wallet_id: uuid.UUID,
    meter: str | None,
    granularity: Granularity,
    first: date,
    last: date,
) -> Summary:
    first, last = window(granularity, first, last)
    periods = await repo.periods(
        conn, wallet_id=wallet_id, meter=meter, granularity=granularity, first=first, last=last
    )
    owed = [d for d in await repo.debts(conn, [wallet_id]) if meter is None or d.meter == meter]
    return Summary(wallet_id, granularity, first, last, periods, owed)
