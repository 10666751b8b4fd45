"""The subscriptions' scheduled entry point (run by the scheduler's leader only)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from commdesk_billing.config import Settings
from commdesk_billing.gateway.factory import subscriptions_client
from commdesk_billing.modules.subscriptions.renewal import Inr, RenewalReport, renew_due


async def renew_subscriptions(
    engine: AsyncEngine,
    settings: Settings | None = None,
    *,
    at: datetime | None = None,
    only: list[uuid.UUID] | None = None,
) -> RenewalReport:
    """Renew, retry (dunning) and expire every subscription due by `at` (default: now),
    or only those of `only`. With `settings`, INR subscriptions too: their charges are
    raised on the members' mandates through a Subscriptions client of this run's own."""
    if settings is None:
        return await renew_due(engine, at=at, only=only)
    async with subscriptions_client(settings) as client:
        return await renew_due(engine, at=at, only=only, inr_run=Inr(settings, client))
