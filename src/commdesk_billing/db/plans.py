"""Cached query plans are rebuilt at least every `db_plan_max_age_s`.

asyncpg prepares every statement once per connection, and PostgreSQL keeps a prepared
statement's generic plan until something invalidates it: an ANALYZE, a VACUUM or a schema
change of a table it reads. A plan made while a table was tiny (a fresh database, the first
minutes after a deploy) is a sequential scan or a hash join over one, and nothing about the
table growing replaces it: with autovacuum off, the batch writer's wallet update scanned the
whole `wallets` table per write for a 30-minute build (docs/benchmarks.md, "10M entries").

So, on checkout, a connection whose plans are older than the limit sends `DISCARD PLANS`:
its prepared statements stay, and each is planned again on its next use against the tables'
current size (the planner scales the last statistics to the table's present page count, so
even stale statistics give an index plan once a table is large). One round trip per
connection per period; no plan outlives it, whatever the statistics say.

Behind a transaction-mode pooler nothing is prepared for reuse (`db/urls.py`): nothing to do.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

_PLANS_AT = "commdesk_plans_at"


def install(engine: AsyncEngine, max_age_s: float) -> None:
    """Keep every pooled connection's plans younger than `max_age_s` (0: do nothing)."""
    if max_age_s <= 0:
        return

    @event.listens_for(engine.sync_engine, "connect")
    def _connected(dbapi_connection: Any, record: Any) -> None:
        record.info[_PLANS_AT] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        now = time.monotonic()
        if now - record.info.get(_PLANS_AT, now) < max_age_s:
            return
        # Runs in the checkout's greenlet, outside any transaction (SQLAlchemy begins one
        # with the first statement). A failure here is a dead connection: the pool drops it
        # and the transaction's own retry takes a new one.
        dbapi_connection.run_async(lambda conn: conn.execute("DISCARD PLANS"))
        record.info[_PLANS_AT] = now
