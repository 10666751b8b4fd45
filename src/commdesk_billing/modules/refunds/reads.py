"""Reading refunds: for their callers over HTTP (with who-may-see rules) and for other
modules, which ask here rather than the table."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.modules.refunds import repository as repo
from commdesk_billing.modules.refunds.model import Refund


async def get(conn: AsyncConnection, refund_id: uuid.UUID) -> Refund | None:
    return await repo.get(conn, refund_id)


async def by_ref(conn: AsyncConnection, refund_ref: str) -> Refund | None:
    """The refund of our own refund id (the one Cashfree echoes in its webhooks)."""
    return await repo.by_ref(conn, refund_ref)
