"""Alembic environment: runs revisions over the direct (non-pooled) database URL."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from commdesk_billing.config import get_settings
from commdesk_billing.db.urls import to_asyncpg

# Several replicas may run `migrate` at start-up; one advisory lock makes them take turns.
_MIGRATION_LOCK = 0x0C0DE5B111


def _run(connection: Connection) -> None:
    connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _MIGRATION_LOCK})
    connection.commit()
    try:
        context.configure(
            connection=connection, target_metadata=None, transaction_per_migration=True
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()
    except BaseException:
        connection.rollback()
        raise
    finally:
        connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _MIGRATION_LOCK})
        connection.commit()


async def _main() -> None:
    url = context.config.attributes.get("database_url") or get_settings().direct_url
    target = to_asyncpg(url)
    engine = create_async_engine(target.url, connect_args=target.connect_args, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            await conn.run_sync(_run)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline SQL generation is not supported; run against a database")
asyncio.run(_main())
