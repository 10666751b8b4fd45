"""Engine, connections and the transaction boundary with bounded retries."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
import structlog
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from commdesk_billing.config import Settings
from commdesk_billing.db import errors, plans, statement_stats
from commdesk_billing.db.driver import DriverConnectionLost
from commdesk_billing.db.urls import to_asyncpg
from commdesk_billing.telemetry import aftercommit

T = TypeVar("T")
log = structlog.get_logger(__name__)

# PostgreSQL answers these when two transactions collide; the right move is to run the whole
# transaction again (DESIGN §8).
RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})


def make_engine(
    settings: Settings, *, direct: bool = False, pool_size: int | None = None
) -> AsyncEngine:
    target = to_asyncpg(
        settings.direct_url if direct else settings.database_url,
        command_timeout_s=settings.db_statement_timeout_ms / 1000,
        # The direct URL never goes through the pooler.
        pooled=False if direct else settings.pooled,
    )
    size = pool_size if pool_size is not None else settings.db_pool_size
    engine = create_async_engine(
        target.url,
        # asyncpg's connect timeout (60 s unless told) covers the TCP connect, TLS and the
        # startup exchange.
        connect_args={"timeout": settings.db_connect_timeout_s, **target.connect_args},
        pool_size=size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout_s,
        pool_pre_ping=settings.db_pool_pre_ping,
        pool_recycle=1800,
    )
    errors.install(engine)
    if not target.pooled:
        plans.install(engine, settings.db_plan_max_age_s)
    statement_stats.install(engine)  # benchmarks only: nothing unless its variable is set
    return engine


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE behind a SQLAlchemy/asyncpg error, if any."""
    seen: BaseException | None = exc
    while seen is not None:
        for attr in ("sqlstate", "pgcode"):
            code = getattr(seen, attr, None)
            if isinstance(code, str):
                return code
        seen = getattr(seen, "orig", None) or seen.__cause__
    return None


async def in_transaction(
    engine: AsyncEngine,
    work: Callable[[AsyncConnection], Awaitable[T]],
    *,
    attempts: int = 6,
) -> T:
    """Run `work` in one transaction, committed before returning.

    `work` must be idempotent (every wallet and ledger operation is, by its key): it may
    run again after a serialization failure, a deadlock or a lost connection.

    The commit is inside the retry loop: a serialization failure can surface at COMMIT.

    Bounded: at most `attempts` runs with under half a second of pauses between them in all.
    Counters of what `work` did (`telemetry.aftercommit.count`) are counted after the
    commit, once; an attempt that fails counts nothing.
    A database that cannot serve the transaction now (no pool connection in time, a statement
    timeout, a refused or timed-out connect: `db/errors.py`) is never tried again here — each
    of those already cost its timeout — and raises `DatabaseUnavailable` (the API's 503).
    """
    for attempt in range(1, attempts + 1):
        connected = False
        try:
            async with engine.connect() as conn:
                connected = True
                # What an earlier, failed use of this connection left pending is dropped here
                # (never on the failure itself: the connection may be invalidated by then).
                aftercommit.discard(conn)
                async with conn.begin():
                    result = await work(conn)
                aftercommit.committed(conn)
                return result
        except Exception as exc:
            reason = errors.classify(exc, connecting=not connected)
            if reason is not None:
                unavailable = errors.report(exc, reason, attempt=attempt)
                if unavailable is exc:
                    raise
                raise unavailable from exc
            code = sqlstate(exc)
            if isinstance(exc, DBAPIError):
                # A connection that died (idle timeout, failover, a suspended Neon compute) is
                # retried too: callers' work is idempotent by key, so even a COMMIT whose
                # outcome we never heard is safe to run again.
                retryable = code in RETRYABLE_SQLSTATES or exc.connection_invalidated
                disconnected = exc.connection_invalidated
            elif isinstance(exc, asyncpg.PostgresError | DriverConnectionLost):
                # The same, from a statement `work` ran on the driver (db/driver.py).
                disconnected = isinstance(exc, DriverConnectionLost)
                retryable = code in RETRYABLE_SQLSTATES or disconnected
            else:
                raise
            if not retryable or attempt == attempts:
                raise
            delay = min(0.5, 0.005 * 2**attempt) * random.uniform(0.5, 1.5)
            log.warning(
                "db.transaction.retry",
                sqlstate=code,
                disconnected=disconnected,
                attempt=attempt,
                delay_s=delay,
            )
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")


async def on_driver(
    engine: AsyncEngine, work: Callable[[asyncpg.Connection[Any]], Awaitable[T]]
) -> T:
    """Run `work` on the asyncpg connection under one of the pool's connections, around
    SQLAlchemy: no transaction is opened, so each statement `work` runs commits on its own.
    Only for a hot path whose every write is one statement (a statement is atomic: a CTE
    that stores a row and its outbox row commits both or neither); it saves the BEGIN and
    COMMIT round trips and SQLAlchemy's per-statement layer. Behind a transaction-mode
    pooler it works as it is (asyncpg prepares nothing there that outlives a statement).

    What the database cannot serve now raises `DatabaseUnavailable`, as in `in_transaction`
    (the driver's own statement timeout included: `work` touches nothing but the driver). A
    connection that died under `work` is dropped from the pool. Nothing is retried here: the
    caller decides (the webhook receiver hands the delivery to its transactional path)."""
    connected = False
    try:
        async with engine.connect() as conn:
            connected = True
            driver = (await conn.get_raw_connection()).driver_connection
            assert driver is not None
            try:
                with statement_stats.on_driver(driver):
                    return await work(driver)
            except BaseException:
                if driver.is_closed():
                    await conn.invalidate()
                raise
    except Exception as exc:
        reason: errors.Reason | None
        if connected and isinstance(exc, TimeoutError):
            reason = "statement_timeout"  # asyncpg's client-side command_timeout
        else:
            reason = errors.classify(exc, connecting=not connected)
        if reason is None:
            raise
        unavailable = errors.report(exc, reason)
        if unavailable is exc:
            raise
        raise unavailable from exc
