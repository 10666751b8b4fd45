"""No pooled connection keeps a query plan past `db_plan_max_age_s` (`db/plans.py`).

A statement prepared while its table was tiny gets a sequential-scan plan; PostgreSQL keeps it
however large the table grows, until an ANALYZE (autovacuum off here, on the table too). The
engine's checkout discards plans older than the limit, so the same statement is planned again
as an index probe. The control engine keeps its plans and shows the scan the limit prevents.
"""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.config import Settings
from commdesk_billing.db.engine import make_engine


async def _lookup(conn: AsyncConnection, table: str) -> None:
    await conn.execute(text(f"SELECT v FROM {table} WHERE id = :i"), {"i": uuid.uuid4()})


async def _plan(conn: AsyncConnection, table: str) -> str:
    """The plan the connection's prepared lookup runs with now (its generic plan, or a
    custom one if PostgreSQL prefers that)."""
    name = (
        await conn.execute(
            text(
                "SELECT name FROM pg_prepared_statements "
                "WHERE statement LIKE :s AND statement NOT LIKE '%pg_prepared%'"
            ),
            {"s": f"SELECT v FROM {table} WHERE id = %"},
        )
    ).scalar_one()
    rows = await conn.exec_driver_sql(f"EXPLAIN EXECUTE {name}('{uuid.uuid4()}')")
    return "\n".join(str(r[0]) for r in rows)


async def _plan_after_growth(url: str, max_age_s: float) -> str:
    table = f"plan_age_{uuid.uuid4().hex[:10]}"
    engine: AsyncEngine = make_engine(
        Settings(database_url=url, db_plan_max_age_s=max_age_s, db_max_overflow=0),
        pool_size=1,
    )
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    f"CREATE TABLE {table} (id uuid PRIMARY KEY, v bigint NOT NULL) "
                    "WITH (autovacuum_enabled = false)"
                )
            )
            await conn.execute(
                text(f"INSERT INTO {table} SELECT gen_random_uuid(), 0 FROM generate_series(1, 3)")
            )
        async with engine.connect() as conn:
            await conn.execute(text(f"ANALYZE {table}"))
            await conn.commit()
        # Past PostgreSQL's five custom plans: the generic plan is made now, on three rows.
        for _ in range(8):
            async with engine.connect() as conn:
                await _lookup(conn, table)
        async with engine.connect() as conn:
            assert "Seq Scan" in await _plan(conn, table)
            await conn.execute(
                text(
                    f"INSERT INTO {table} SELECT gen_random_uuid(), 0 "
                    "FROM generate_series(1, 50000)"
                )
            )
            await conn.commit()
        await asyncio.sleep(max_age_s + 0.2)
        async with engine.connect() as conn:
            await _lookup(conn, table)
            return await _plan(conn, table)
    finally:
        async with engine.begin() as conn:
            await conn.execute(text(f"DROP TABLE IF EXISTS {table}"))
        await engine.dispose()


async def test_a_plan_made_on_a_tiny_table_is_replaced_once_it_is_old(
    scratch_database_url: str,
) -> None:
    plan = await _plan_after_growth(scratch_database_url, max_age_s=0.3)
    assert "Index Scan" in plan and "Seq Scan" not in plan, plan


async def test_without_the_limit_the_tiny_tables_scan_is_kept(scratch_database_url: str) -> None:
    plan = await _plan_after_growth(scratch_database_url, max_age_s=0)
    assert "Seq Scan" in plan, plan


def test_behind_a_pooler_nothing_is_discarded() -> None:
    """Through a transaction-mode pooler nothing prepared is reused, so nothing is listened
    for: `DISCARD PLANS` there would reach whichever server connection the pooler picked."""
    url = "postgresql://u@db.example/x"
    direct = make_engine(Settings(database_url=url, db_pooler="none"))
    pooled = make_engine(Settings(database_url=url, db_pooler="transaction"))
    assert len(direct.sync_engine.pool.dispatch.checkout) == 1
    assert len(pooled.sync_engine.pool.dispatch.checkout) == 0


async def test_a_connection_that_died_is_replaced_when_its_plans_are_due(
    scratch_database_url: str,
) -> None:
    """The discard is the first thing a due connection sends: one the server has ended is
    dropped by the pool and another checked out, not an error for the caller."""
    settings = Settings(database_url=scratch_database_url, db_plan_max_age_s=0.1)
    engine = make_engine(settings, pool_size=1)
    killer = make_engine(Settings(database_url=scratch_database_url), pool_size=1)
    try:
        async with engine.connect() as conn:
            pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        async with killer.connect() as other:
            await other.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
        await asyncio.sleep(0.3)
        async with engine.connect() as conn:
            new_pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        assert new_pid != pid
    finally:
        await engine.dispose()
        await killer.dispose()
