"""Cached query plans are rebuilt at least every `db_plan_max_age_s`.

asyncpg prepares every statement once per connection, and PostgreSQL keeps a prepared
statement's generic plan until something invalidates it: an ANALYZE, a VACUUM or a schema
change of a table it reads. A plan made while a table was tiny (a fresh database, the first
minutes after a deploy) is a sequential scan or a hash join over one, and nothing about the
table growing replaces it: with autovacuum off, the batch writer's wallet update scanned the
whole `wallets` table per write for a 30-minute build (docs/benchmarks.md, "10M entries").

So, on checkout, a connection whose plans are older than its period sends `DISCARD PLANS`:
its prepared statements stay, and each is planned again on its next use against the tables'
current size (the planner scales the last statistics to the table's present page count, so
even stale statistics give an index plan once a table is large). A new connection's period
starts at 5 s and doubles up to the limit: the plans that go wrong are the ones made on tiny
tables, in a fresh database's first seconds, and a database fills fastest then (a bulk
build made ~22 000 wallet scans in its first minute with a flat 60 s). One round trip per
connection per period; no plan outlives the limit, whatever the statistics say.

Behind a transaction-mode pooler nothing is prepared for reuse (`db/urls.py`): nothing to do.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine

_PLANS_AT = "commdesk_plans_at"
_PERIOD = "commdesk_plans_period"
_FIRST_PERIOD_S = 5.0


def install(engine: AsyncEngine, max_age_s: float) -> None:
    """Keep every pooled connection's plans younger than `max_age_s` (0: do nothing)."""
    if max_age_s <= 0:
        return

    @event.listens_for(engine.sync_engine, "connect")
    def _connected(dbapi_connection: Any, record: Any) -> None:
        record.info[_PLANS_AT] = time.monotonic()
        record.info[_PERIOD] = min(_FIRST_PERIOD_S, max_age_s)

    @event.listens_for(engine.sync_engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        now = time.monotonic()
        period = record.info.get(_PERIOD, max_age_s)
        if now - record.info.get(_PLANS_AT, now) < period:
            return
        # Runs in the checkout's greenlet, outside any transaction (SQLAlchemy begins one
        # with the first statement). A connection that cannot take it is a dead one:
        # DisconnectionError makes the pool drop it and check out another (up to 3 times).
        try:
            dbapi_connection.run_async(lambda conn: conn.execute("DISCARD PLANS"))
        except Exception as exc:
            raise DisconnectionError("connection failed while discarding its plans") from exc
        record.info[_PLANS_AT] = now
        record.info[_PERIOD] = min(period * 2, max_age_s)
