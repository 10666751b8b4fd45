"""Statements on the asyncpg connection under a SQLAlchemy one, inside its transaction.

SQLAlchemy's async layer costs about as much CPU per statement as asyncpg itself (a greenlet
switch, the cursor adaptation, result metadata and row objects). A hot path that runs a few
statements per request can run them on the driver instead, in the transaction
`in_transaction` opened, so it keeps that function's retries, its error classification and
its commit, and anything else in the transaction can still go through SQLAlchemy.

The SQL is the same text the repositories give SQLAlchemy (`:name` parameters): it is turned
into asyncpg's `$n` form once per statement shape.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any, TypeAlias

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.db.errors import DatabaseUnavailable

# SQLAlchemy's own rule for a bind parameter in text(): `:name`, not `::type`, not `\:`.
_BIND = re.compile(r"(?<![:\w\\]):(\w+)(?!:)")

Driver: TypeAlias = "asyncpg.Connection[Any]"


@lru_cache(maxsize=512)
def positional(statement: str) -> tuple[str, tuple[str, ...]]:
    """`statement` with `:name` parameters as `$1..$n`, and the names in that order (a name
    used twice is one parameter)."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in names:
            names.append(name)
        return f"${names.index(name) + 1}"

    return _BIND.sub(number, statement), tuple(names)


async def driver_of(conn: AsyncConnection) -> Driver:
    """The asyncpg connection under `conn`, with the transaction `conn.begin()` opened begun
    on it.

    SQLAlchemy's asyncpg adapter sends BEGIN lazily, with its first statement; a statement
    sent to the driver before that would run outside the transaction (and commit on its own).
    So the adapter's transaction is started here, once: COMMIT and ROLLBACK then go through
    SQLAlchemy as usual, and later SQLAlchemy statements join the same transaction. The
    adapter's `_start_transaction` is not public API; the SQLAlchemy version is pinned and
    tests/db/test_driver.py fails if this stops holding."""
    raw = await conn.get_raw_connection()
    adapted: Any = raw.dbapi_connection
    if not conn.in_transaction():
        raise RuntimeError("driver_of needs a connection inside conn.begin()")
    driver = raw.driver_connection
    assert driver is not None
    if adapted._transaction is None:
        try:
            await adapted._start_transaction()
        except Exception as exc:
            # The adapter raises its own DB-API error here, not through SQLAlchemy: a
            # connection the server ended while it sat in the pool would reach the caller
            # as an unexpected error. It is a lost connection like any other.
            if driver.is_closed():
                await conn.invalidate()
                raise DriverConnectionLost(str(exc)) from exc
            raise
    return driver


class DriverConnectionLost(Exception):
    """The connection died under a driver statement; the SQLAlchemy connection was
    invalidated, and `in_transaction` runs the whole transaction again (as it does when the
    same happens under SQLAlchemy)."""


async def fetch(
    conn: AsyncConnection, driver: Driver, statement: str, params: Mapping[str, Any]
) -> list[asyncpg.Record]:
    """Run `statement` (`:name` parameters from `params`) on `driver`, the connection
    `driver_of(conn)` gave, and return its rows."""
    sql, names = positional(statement)
    try:
        rows: list[asyncpg.Record] = await driver.fetch(sql, *(params[n] for n in names))
        return rows
    except TimeoutError as exc:
        # asyncpg's client-side `command_timeout`: what the engine's error hook names for a
        # statement that went through SQLAlchemy (db/errors.py).
        raise DatabaseUnavailable("statement_timeout") from exc
    except Exception as exc:
        if driver.is_closed():
            await conn.invalidate()
            raise DriverConnectionLost(str(exc)) from exc
        raise
