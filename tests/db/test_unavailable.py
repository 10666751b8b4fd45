"""The database saying no, for real: `in_transaction` names why (`db/errors.py`), counts it,
and never runs the transaction again itself.

Each case is produced against real PostgreSQL (a pool of one whose connection a test holds, a
statement that outlives its timeout, a role with CONNECTION LIMIT 0, a port nothing listens
on). Two states cannot be produced on a server others share: "the database system is starting
up" is a loopback listener that answers the startup packet the way PostgreSQL does then, and a
connect that never completes is a listener that accepts and stays silent.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from structlog.testing import capture_logs

from commdesk_billing.config import Settings
from commdesk_billing.db import errors
from commdesk_billing.db.engine import in_transaction, make_engine
from commdesk_billing.db.errors import DatabaseUnavailable
from commdesk_billing.errors import InsufficientCredits


def _count(reason: str) -> float:
    return REGISTRY.get_sample_value("billing_db_unavailable_total", {"reason": reason}) or 0.0


@contextlib.asynccontextmanager
async def _engine(settings: Settings, **overrides: Any) -> AsyncIterator[AsyncEngine]:
    eng = make_engine(settings.model_copy(update=overrides))
    try:
        yield eng
    finally:
        await eng.dispose()


class Attempts:
    """How often `in_transaction` ran the work, and how many connections it opened."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.runs = 0
        self.connects = 0

        def counted(*_: Any) -> None:
            self.connects += 1

        event.listen(engine.sync_engine, "do_connect", counted)

    def work(
        self, then: Callable[[AsyncConnection], Awaitable[Any]] | None = None
    ) -> Callable[[AsyncConnection], Awaitable[Any]]:
        async def run(conn: AsyncConnection) -> Any:
            self.runs += 1
            if then is not None:
                return await then(conn)
            return (await conn.execute(text("SELECT 1"))).scalar_one()

        return run


async def _unavailable(
    engine: AsyncEngine,
    work: Callable[[AsyncConnection], Awaitable[Any]],
    reason: str,
    error: str,
) -> DatabaseUnavailable:
    """`in_transaction` gives up with `reason`, counted once and logged once, naming the
    exception class that decided it."""
    before = _count(reason)
    with capture_logs() as logs, pytest.raises(DatabaseUnavailable) as raised:
        await in_transaction(engine, work)
    assert raised.value.reason == reason
    assert _count(reason) == before + 1
    [logged] = [e for e in logs if e["event"] == "db.unavailable"]
    assert (logged["log_level"], logged["reason"], logged["error"], logged["attempt"]) == (
        "warning",
        reason,
        error,
        1,
    )
    return raised.value


async def test_a_full_pool_is_a_pool_timeout_and_not_waited_for_again(settings: Settings) -> None:
    async with _engine(settings, db_pool_size=1, db_max_overflow=0, db_pool_timeout_s=0.2) as eng:
        seen = Attempts(eng)
        async with eng.connect() as held:
            await held.execute(text("SELECT 1"))
            exc = await _unavailable(
                eng, seen.work(), "pool_timeout", "sqlalchemy.exc.TimeoutError"
            )
            assert seen.runs == 0
            assert exc.retry_after_s == 1
            assert type(exc.__cause__).__module__ == "sqlalchemy.exc"
        # The pool's connection is back: the same work goes through.
        assert await in_transaction(eng, seen.work()) == 1
        assert seen.runs == 1


async def test_the_servers_statement_timeout_runs_once(settings: Settings) -> None:
    async def slow(conn: AsyncConnection) -> None:
        await conn.execute(text("SET LOCAL statement_timeout = '100ms'"))
        await conn.execute(text("SELECT pg_sleep(5)"))

    async with _engine(settings) as eng:
        seen = Attempts(eng)
        exc = await _unavailable(
            eng, seen.work(slow), "statement_timeout", "asyncpg.exceptions.QueryCanceledError"
        )
        assert seen.runs == 1
        assert exc.retry_after_s == 2
        assert errors.classify(exc.__cause__) == "statement_timeout"  # type: ignore[arg-type]
        assert isinstance(exc.__cause__, DBAPIError)
        assert getattr(exc.__cause__.orig, "sqlstate", None) == "57014"


async def test_the_client_side_statement_timeout_is_named_and_leaves_the_pool_usable(
    settings: Settings,
) -> None:
    async def slow(conn: AsyncConnection) -> None:
        await conn.execute(text("SELECT pg_sleep(5)"))

    async with _engine(settings, db_statement_timeout_ms=100, db_pool_size=1) as eng:
        seen = Attempts(eng)
        exc = await _unavailable(eng, seen.work(slow), "statement_timeout", "builtins.TimeoutError")
        assert seen.runs == 1
        # asyncpg's own timeout, named by the engine's error hook.
        assert type(exc.__cause__) is TimeoutError
        # SQLAlchemy discards a connection whose statement timed out on the client side (its
        # state is unknown): the pool of one opens a new one and serves again.
        assert await in_transaction(eng, seen.work()) == 1
        assert (seen.runs, seen.connects) == (2, 2)


async def test_nothing_listening_is_a_connect_error_tried_once(settings: Settings) -> None:
    with socket_nobody_listens_on() as port:
        async with _engine(
            settings, database_url=f"postgresql://postgres@127.0.0.1:{port}/postgres"
        ) as eng:
            seen = Attempts(eng)
            exc = await _unavailable(
                eng, seen.work(), "connect_error", "builtins.ConnectionRefusedError"
            )
            assert (seen.runs, seen.connects) == (0, 1)
            assert isinstance(exc.__cause__, ConnectionRefusedError)
            assert exc.retry_after_s == 5


async def test_a_silent_server_is_a_connect_timeout(settings: Settings) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # never answers; returns when the client gives up
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with _engine(
            settings,
            database_url=f"postgresql://postgres@127.0.0.1:{port}/postgres",
            db_connect_timeout_s=0.2,
        ) as eng:
            seen = Attempts(eng)
            exc = await _unavailable(eng, seen.work(), "connect_timeout", "builtins.TimeoutError")
            assert (seen.runs, seen.connects) == (0, 1)
            assert type(exc.__cause__) is TimeoutError
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture
async def role_without_connections(engine: AsyncEngine) -> AsyncIterator[str]:
    """A role PostgreSQL refuses with its real "too many connections" (53300), without
    filling the shared server's connection table."""
    name = f"cdb_nolimit_{uuid.uuid4().hex[:10]}"
    async with engine.begin() as conn:
        await conn.execute(text(f'CREATE ROLE "{name}" LOGIN CONNECTION LIMIT 0'))
    try:
        yield name
    finally:
        async with engine.begin() as conn:
            await conn.execute(text(f'DROP ROLE "{name}"'))


async def test_too_many_connections_from_postgresql(
    settings: Settings, role_without_connections: str
) -> None:
    url = settings.database_url.replace("postgres@", f"{role_without_connections}@", 1)
    assert role_without_connections in url
    async with _engine(settings, database_url=url) as eng:
        seen = Attempts(eng)
        exc = await _unavailable(
            eng, seen.work(), "too_many_connections", "asyncpg.exceptions.TooManyConnectionsError"
        )
        assert (seen.runs, seen.connects) == (0, 1)
        assert isinstance(exc.__cause__, DBAPIError)
        assert getattr(exc.__cause__.orig, "sqlstate", None) == "53300"
        assert exc.retry_after_s == 2


def _error_response(sqlstate: str, message: str) -> bytes:
    fields = b"".join(
        kind + value.encode() + b"\0"
        for kind, value in ((b"S", "FATAL"), (b"V", "FATAL"), (b"C", sqlstate), (b"M", message))
    )
    body = fields + b"\0"
    return b"E" + struct.pack("!I", len(body) + 4) + body


@contextlib.asynccontextmanager
async def refusing_postgres(sqlstate: str, message: str) -> AsyncIterator[int]:
    """A listener answering the startup packet with PostgreSQL's FATAL ErrorResponse, as the
    postmaster does while it starts up. Declines SSL and GSS encryption first."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                length = struct.unpack("!I", await reader.readexactly(4))[0]
                packet = await reader.readexactly(length - 4)
                code = struct.unpack("!I", packet[:4])[0]
                if code in (80877103, 80877104):  # SSLRequest, GSSENCRequest
                    writer.write(b"N")
                    await writer.drain()
                    continue
                writer.write(_error_response(sqlstate, message))
                await writer.drain()
                return
        except asyncio.IncompleteReadError:
            return
        finally:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def test_a_server_starting_up_is_cannot_connect_now(settings: Settings) -> None:
    async with refusing_postgres("57P03", "the database system is starting up") as port:
        url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        async with _engine(settings, database_url=url) as eng:
            seen = Attempts(eng)
            exc = await _unavailable(
                eng, seen.work(), "cannot_connect_now", "asyncpg.exceptions.CannotConnectNowError"
            )
            assert (seen.runs, seen.connects) == (0, 1)
            assert isinstance(exc.__cause__, DBAPIError)
            assert getattr(exc.__cause__.orig, "sqlstate", None) == "57P03"
            assert exc.retry_after_s == 5


async def test_misconfiguration_is_not_unavailability(settings: Settings) -> None:
    """A role that does not exist (or a wrong password, a missing database) is for an
    operator to fix, not a reason to ask clients to come back: it stays an error."""
    url = settings.database_url.replace("postgres@", f"cdb_nobody_{uuid.uuid4().hex[:8]}@", 1)
    async with _engine(settings, database_url=url) as eng:
        seen = Attempts(eng)
        with pytest.raises(DBAPIError) as raised:
            await in_transaction(eng, seen.work())
        assert getattr(raised.value.orig, "sqlstate", None) == "28000"
        assert errors.classify(raised.value, connecting=True) is None
        assert (seen.runs, seen.connects) == (0, 1)


async def test_a_lost_connection_is_still_run_again(settings: Settings) -> None:
    """The retries that stay: a connection PostgreSQL terminated under the transaction."""
    async with _engine(settings, db_pool_size=1) as eng:
        seen = Attempts(eng)

        async def dies_once(conn: AsyncConnection) -> int:
            if seen.runs == 1:
                await conn.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))
            return int((await conn.execute(text("SELECT 7"))).scalar_one())

        assert await in_transaction(eng, seen.work(dies_once)) == 7
        assert (seen.runs, seen.connects) == (2, 2)


def test_classification_is_by_class_not_by_text() -> None:
    # The message of an unrelated error does not make it the database's.
    assert errors.classify(RuntimeError("too many clients already")) is None
    assert errors.classify(RuntimeError("the database system is starting up")) is None
    # A bare OSError or TimeoutError is the database's only while connecting.
    assert errors.classify(ConnectionRefusedError(), connecting=False) is None
    assert errors.classify(TimeoutError(), connecting=False) is None
    assert errors.classify(ConnectionRefusedError(), connecting=True) == "connect_error"
    assert errors.classify(TimeoutError(), connecting=True) == "connect_timeout"
    # A business refusal is never unavailability, whatever it was raised from.
    refusal = InsufficientCredits("not enough")
    refusal.__cause__ = OSError()
    assert errors.classify(refusal) is None
    assert set(errors.RETRY_AFTER_S) == set(errors.REASONS)
    assert all(1 <= s <= 5 for s in errors.RETRY_AFTER_S.values())


@contextlib.contextmanager
def socket_nobody_listens_on() -> Any:
    """A loopback port that was bound and released: connecting to it is refused."""
    import socket

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    yield port
