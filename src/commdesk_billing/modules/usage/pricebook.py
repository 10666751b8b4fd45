"""The price book: append-only versions per meter, managed by finance.

A version takes effect at `effective_from` and stays in force until the next one does; an
event is rated by the version in force when it occurred. A new version must take effect
after the meter's latest version and after the latest event already recorded for the meter
(409 `price_version_too_early`): an event once rated is never re-rated, and a version never
reaches back under one. Both are read under the meter's row lock, which rating batches hold
FOR SHARE, so no event is being rated for the meter while the version is added.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.errors import PriceVersionTooEarly, UsageMeterNotFound
from commdesk_billing.modules.usage import rating
from commdesk_billing.modules.usage import repository as repo
from commdesk_billing.modules.usage.model import Policy, PriceVersion, Tier


async def add_version(
    conn: AsyncConnection,
    *,
    meter: str,
    effective_from: datetime,
    tiers: Sequence[Tier],
    on_insufficient: Policy,
    overdraft_limit_credits: int,
    reason: str,
    by: str,
) -> PriceVersion:
    rating.check_tiers(tiers)  # the schema checked it too; a service call is checked again
    if on_insufficient is Policy.reject and overdraft_limit_credits != 0:
        raise ValueError("a reject policy has no overdraft limit")
    latest = await repo.lock_meter(conn, meter)
    if latest is not None:
        current = await repo.latest_version(conn, meter, latest)
        if effective_from <= current.effective_from:
            raise PriceVersionTooEarly(
                f"version {latest} of this meter takes effect at "
                f"{current.effective_from.isoformat()}; a new one must take effect later"
            )
    rated = await repo.last_rated_at(conn, meter)
    if rated is not None and effective_from <= rated:
        raise PriceVersionTooEarly(
            f"an event of this meter that occurred at {rated.isoformat()} is already rated; "
            "a new version must take effect after it"
        )
    return await repo.insert_version(
        conn,
        PriceVersion(
            meter=meter,
            version=(latest or 0) + 1,
            effective_from=effective_from,
            tiers=tuple(tiers),
            on_insufficient=on_insufficient,
            overdraft_limit_credits=overdraft_limit_credits,
            reason=reason,
            created_by=by,
            created_at=effective_from,  # replaced by the row's own
        ),
    )


async def versions(conn: AsyncConnection, meter: str | None) -> list[PriceVersion]:
    found = await repo.price_book(conn, meter)
    if meter is not None and not found:
        raise UsageMeterNotFound("no price book version for this meter")
    return found
