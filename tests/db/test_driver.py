"""Statements on the driver inside `in_transaction` (`db/driver.py`): in its transaction,
committed and rolled back with it, retried like SQLAlchemy's own, against real PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.db.driver import driver_of, fetch, positional
from commdesk_billing.db.engine import in_transaction


def test_named_parameters_become_positional_once_per_name() -> None:
    sql, names = positional("SELECT :a, CAST(:b AS int), :a, x::text FROM t WHERE y = :b_2")
    assert sql == "SELECT $1, CAST($2 AS int), $1, x::text FROM t WHERE y = $3"
    assert names == ("a", "b", "b_2")


@pytest.fixture
async def table(engine: AsyncEngine) -> AsyncIterator[str]:
    name = f"driver_test_{uuid.uuid4().hex[:10]}"
    async with engine.begin() as conn:
        await conn.execute(text(f"CREATE TABLE {name} (v int)"))
    try:
        yield name
    finally:
        async with engine.begin() as conn:
            await conn.execute(text(f"DROP TABLE {name}"))


async def _count(engine: AsyncEngine, table: str) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one())


async def test_driver_statements_commit_and_roll_back_with_the_transaction(
    engine: AsyncEngine, table: str
) -> None:
    async def work(conn: AsyncConnection) -> int:
        driver = await driver_of(conn)
        await fetch(conn, driver, f"INSERT INTO {table} VALUES (:v)", {"v": 1})
        # SQLAlchemy's statements join the same transaction: they see the driver's row.
        return int((await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one())

    assert await in_transaction(engine, work) == 1
    assert await _count(engine, table) == 1

    async def fails(conn: AsyncConnection) -> None:
        driver = await driver_of(conn)
        await fetch(conn, driver, f"INSERT INTO {table} VALUES (:v)", {"v": 2})
        raise RuntimeError("after the insert")

    with pytest.raises(RuntimeError):
        await in_transaction(engine, fails)
    assert await _count(engine, table) == 1  # rolled back


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param(
            "DO $$ BEGIN RAISE EXCEPTION 'collided' USING ERRCODE = '40001'; END $$",
            id="a serialization failure",
        ),
        # The server ends this very connection mid-transaction.
        pytest.param("SELECT pg_terminate_backend(pg_backend_pid())", id="a connection lost"),
    ],
)
async def test_a_retryable_failure_under_a_driver_statement_runs_the_transaction_again(
    engine: AsyncEngine, table: str, failure: str
) -> None:
    attempts: list[int] = []

    async def work(conn: AsyncConnection) -> None:
        attempts.append(1)
        driver = await driver_of(conn)
        await fetch(conn, driver, f"INSERT INTO {table} VALUES (:v)", {"v": len(attempts)})
        if len(attempts) == 1:
            await fetch(conn, driver, failure, {})

    await in_transaction(engine, work)
    assert len(attempts) == 2
    async with engine.connect() as conn:
        rows = (await conn.execute(text(f"SELECT v FROM {table}"))).all()
    assert [r.v for r in rows] == [2]  # the first attempt's row went with it


async def test_driver_of_needs_a_transaction(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        with pytest.raises(RuntimeError):
            await driver_of(conn)


async def test_a_connection_lost_before_the_transaction_began_runs_it_again(
    engine: AsyncEngine, table: str
) -> None:
    """The server ended the pooled connection while it sat idle: the BEGIN `driver_of` sends
    is the first to find out, and the transaction runs again on a new connection (not an
    error the request would answer 500 with)."""
    attempts: list[int] = []

    async def work(conn: AsyncConnection) -> None:
        attempts.append(1)
        if len(attempts) == 1:
            raw = await conn.get_raw_connection()
            pid = raw.driver_connection.get_server_pid()  # type: ignore[union-attr]
            async with engine.connect() as other:
                await other.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
                await other.commit()
            await asyncio.sleep(0.2)  # the server's goodbye has reached the socket
        driver = await driver_of(conn)
        await fetch(conn, driver, f"INSERT INTO {table} VALUES (:v)", {"v": len(attempts)})

    await in_transaction(engine, work)
    assert len(attempts) == 2
    async with engine.connect() as conn:
        rows = (await conn.execute(text(f"SELECT v FROM {table}"))).all()
    assert [r.v for r in rows] == [2]
