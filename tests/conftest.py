"""Test fixtures on real PostgreSQL.

Each test run creates its own database and drops it at the end. Before dropping it, the
whole ledger the suite produced is sealed and verified: the suite's workload must leave the
books clean.

Alembic (the schema's one source) runs once per run, into a template database of the run's
own (`cdb_tmpl_<hex>`); every database a test needs (the suite's, each scratch database,
each payments stack's) is a clone of it (`CREATE DATABASE … TEMPLATE …`), dropped with the
run.
"""

from __future__ import annotations

import asyncio
import os
import uuid
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, ClassVar

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.app import create_app
from commdesk_billing.config import Settings
from commdesk_billing.db.engine import in_transaction, make_engine
from commdesk_billing.db.migrate import upgrade
from commdesk_billing.modules.ledger.seal import seal_pending
from commdesk_billing.modules.ledger.verify import verify_ledger
from commdesk_billing.modules.wallet import service as ws
from commdesk_billing.modules.wallet.model import LotSource, Wallet
from commdesk_billing.security.jwt import Role, issue_token
from commdesk_billing.storage import LocalDocumentStore

ADMIN_URL = os.environ.get(
    "BILLING_TEST_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


_SUITE_SUMMARY: list[str] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for line in _SUITE_SUMMARY:
        terminalreporter.write_line(line)


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


@pytest.fixture(scope="session", autouse=True)
async def _template_database() -> AsyncIterator[None]:
    """Drops the run's template at the very end (first set up, so last torn down: after
    every fixture that clones it). It is made on first use, so a run that needs no
    database migrates nothing."""
    try:
        yield
    finally:
        await drop_template()


async def seal_and_verify(url: str, what: str) -> None:
    """Seal and verify a test database's whole ledger; report it in the run's summary."""
    engine = make_engine(Settings(database_url=url), pool_size=2)
    try:
        await seal_pending(engine)
        report = await verify_ledger(engine)
    finally:
        await engine.dispose()
    _SUITE_SUMMARY.append(f"ledger verify after {what}: ok={report.ok} {report.stats}")
    assert report.ok, "\n".join(str(f) for f in report.findings)


@pytest.fixture(scope="session")
async def database_url() -> AsyncIterator[str]:
    name = f"cdb_test_{uuid.uuid4().hex[:12]}"
    url = await create_database(name)
    try:
        yield url
        await seal_and_verify(url, "the suite")
    finally:
        await drop_database(name)


@pytest.fixture
async def scratch_database_url() -> AsyncIterator[str]:
    """A database of its own, for tests that tamper with the books on purpose."""
    name = f"cdb_scratch_{uuid.uuid4().hex[:12]}"
    url = await create_database(name)
    try:
        yield url
    finally:
        await drop_database(name)


@pytest.fixture(scope="session")
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, db_pool_size=30, db_max_overflow=10, log_json=False)


@pytest.fixture(scope="session")
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    eng = make_engine(settings)
    try:
        yield eng
    finally:
        await eng.dispose()


@pytest.fixture
async def scratch_engine(scratch_database_url: str) -> AsyncIterator[AsyncEngine]:
    eng = make_engine(Settings(database_url=scratch_database_url), pool_size=5)
    try:
        yield eng
    finally:
        await eng.dispose()


Tx = Callable[[Callable[[AsyncConnection], Awaitable[Any]]], Awaitable[Any]]


@pytest.fixture
def tx(engine: AsyncEngine) -> Tx:
    async def run(work: Callable[[AsyncConnection], Awaitable[Any]]) -> Any:
        return await in_transaction(engine, work)

    return run


async def new_wallet(
    engine: AsyncEngine,
    credits: int = 0,
    *,
    sub: str | None = None,
    source: LotSource = LotSource.purchase,
) -> Wallet:
    sub = sub or f"user-{uuid.uuid4().hex}"
    wallet = await in_transaction(engine, lambda c: ws.get_or_create_user_wallet(c, sub))
    if credits:
        result = await in_transaction(
            engine,
            lambda c: ws.grant_credits(
                c,
                wallet_id=wallet.id,
                credits=credits,
                source=source,
                idempotency_key=f"seed:{uuid.uuid4()}",
                reason="test funding",
                paid_paise=credits * 10 if source is LotSource.purchase else 0,
                taxable_paise=credits * 10 * 100 // 118 if source is LotSource.purchase else 0,
            ),
        )
        wallet = result.wallet
    return wallet


@pytest.fixture
def make_wallet(engine: AsyncEngine) -> Callable[..., Awaitable[Wallet]]:
    async def make(credits: int = 0, **kw: Any) -> Wallet:
        return await new_wallet(engine, credits, **kw)

    return make


@pytest.fixture(scope="session")
async def app(
    settings: Settings, engine: AsyncEngine, tmp_path_factory: pytest.TempPathFactory
) -> Any:
    application = create_app(settings)
    # ASGITransport does not run the lifespan; hand the app the suite's engine directly.
    application.state.settings = settings
    application.state.engine = engine
    application.state.documents = LocalDocumentStore(tmp_path_factory.mktemp("api-documents"))
    return application


@pytest.fixture
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://billing.test") as c:
        yield c


@pytest.fixture
def token(settings: Settings) -> Callable[..., str]:
    def make(
        role: Role | str = Role.member, sub: str | None = None, scopes: list[str] | None = None
    ) -> str:
        return issue_token(
            settings, sub=sub or f"user-{uuid.uuid4().hex}", role=Role(role), scopes=scopes
        )

    return make


def auth(tok: str, key: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {tok}"}
    if key is not None:
        headers["Idempotency-Key"] = key
    return headers


def pytest_configure(config: Any) -> None:
    # Services called directly announce and send through the deployment's routes, as every
    # process does once it starts (wiring.install).
    from commdesk_billing import wiring

    wiring.install()
