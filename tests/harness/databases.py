"""Test databases: one migrated template per run, every database a clone of it.

Alembic (the schema's one source) runs once per run, into a template database of the run's
own (`cdb_tmpl_<hex>`); every database a test needs (the suite's, each scratch database,
each stack's) is a clone of it (`CREATE DATABASE … TEMPLATE …`), dropped with the run.
"""

from __future__ import annotations

import asyncio
import os
import uuid
import weakref
from typing import Any, ClassVar

import asyncpg
from sqlalchemy.engine import make_url

from commdesk_billing.config import Settings
from commdesk_billing.db.engine import make_engine
from commdesk_billing.db.migrate import upgrade
from commdesk_billing.modules.ledger.seal import seal_pending
from commdesk_billing.modules.ledger.verify import verify_ledger

ADMIN_URL = os.environ.get(
    "BILLING_TEST_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


SUITE_SUMMARY: list[str] = []


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _url_of(name: str) -> str:
    return make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)


class _Template:
    """This run's migrated template database (one per process: with pytest-xdist each
    worker would make its own, the names being unique)."""

    name: str | None = None
    # PostgreSQL refuses to clone a database anyone is connected to ("source database is
    # being accessed by other users"), so clones take turns; one lock per event loop, as an
    # asyncio.Lock belongs to the loop it is first used in.
    locks: ClassVar[weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock]] = (
        weakref.WeakKeyDictionary()
    )

    @classmethod
    def lock(cls) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if loop not in cls.locks:
            cls.locks[loop] = asyncio.Lock()
        return cls.locks[loop]


async def _template(admin: Any) -> str:
    """The run's template, migrated on first use. Call with `_Template.lock()` held."""
    if _Template.name is None:
        name = f"cdb_tmpl_{uuid.uuid4().hex[:12]}"
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            # Alembic's engine uses NullPool and is disposed when the upgrade returns.
            await asyncio.to_thread(upgrade, _url_of(name))
            # From now on nobody may connect to it, so nothing can spoil a clone.
            await admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
        except BaseException:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            raise
        _Template.name = name
    return _Template.name


async def create_database(name: str) -> str:
    """A new database with the whole schema: a clone of the run's migrated template."""
    async with _Template.lock():
        admin = await asyncpg.connect(_dsn(ADMIN_URL))
        try:
            template = await _template(admin)
            await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        finally:
            await admin.close()
    return _url_of(name)


async def drop_template() -> None:
    """Drop the run's template (if one was made); a later create_database makes another."""
    async with _Template.lock():
        if _Template.name is not None:
            await drop_database(_Template.name)
            _Template.name = None


async def drop_database(name: str) -> None:
    conn = await asyncpg.connect(_dsn(ADMIN_URL))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def seal_and_verify(url: str, what: str) -> None:
    """Seal and verify a test database's whole ledger; report it in the run's summary."""
    engine = make_engine(Settings(database_url=url), pool_size=2)
    try:
        await seal_pending(engine)
        report = await verify_ledger(engine)
    finally:
        await engine.dispose()
    SUITE_SUMMARY.append(f"ledger verify after {what}: ok={report.ok} {report.stats}")
    assert report.ok, "\n".join(str(f) for f in report.findings)


async def tamper(url: str, sql: str, *args: object, tables: tuple[str, ...]) -> None:
    """Change the books behind the application's back, as only a superuser could: every
    user trigger of `tables` (append-only rules, the ledger's checks) off for one
    statement. What `ledger verify` exists to catch."""
    conn = await asyncpg.connect(_dsn(url))
    try:
        async with conn.transaction():
            for table in tables:
                await conn.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
            await conn.execute(sql, *args)
            for table in tables:
                await conn.execute(f"ALTER TABLE {table} ENABLE TRIGGER USER")
    finally:
        await conn.close()
