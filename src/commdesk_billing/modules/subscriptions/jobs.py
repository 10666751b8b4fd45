"""The subscriptions' scheduled entry point (run by the scheduler's leader only)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from commdesk_billing.modules.subscriptions.renewal import RenewalReport, renew_due


async def renew_subscriptions(
    engine: AsyncEngine, *, at: datetime | None = None, only: list[uuid.UUID] | None = None
) -> RenewalReport:
    """Renew, retry (dunning) and expire every subscription due by `at` (default: now),
    or only those of `only`."""
    return await renew_due(engine, at=at, only=only)
