"""Scheduled work: documents that were never issued, and PDFs that were never stored (their
message dead-lettered: a bug, storage down past the last retry) are announced again, so
every credited purchase ends up with its invoice, every refund with its credit note, and
every document with its PDF."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.db.engine import in_transaction
from commdesk_billing.modules.invoices import repository as repo
from commdesk_billing.queues import outbox

RETRY_AFTER = timedelta(minutes=10)


async def render_pending(engine: AsyncEngine, *, batch: int = 200) -> int:
    async def work(conn: AsyncConnection) -> int:
        since = datetime.now(UTC) - RETRY_AFTER
        missing = await repo.undocumented(conn, older_than=since, limit=batch)
        for message_type, key, value in missing:
            await outbox.send(
                conn, "invoice.generate", message_type, {key: str(value)}, correlation_id=str(value)
            )
        ids = await repo.pending_pdfs(conn, older_than=datetime.now(UTC) - RETRY_AFTER, limit=batch)
        for invoice_id in ids:
            await outbox.send(
                conn,
                "invoice.render",
                "invoice.render",
                {"invoice_id": str(invoice_id)},
                correlation_id=str(invoice_id),
            )
        return len(ids) + len(missing)

    return await in_transaction(engine, work)
