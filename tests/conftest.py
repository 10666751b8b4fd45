"""Test fixtures on real PostgreSQL.

Each test run creates its own database (`harness/databases.py`) and drops it at the end.
Before dropping it, the whole ledger the suite produced is sealed and verified: the suite's
workload must leave the books clean. Communities come from a MongoDB-wire server the run
starts on loopback, in a database of the run's own (`harness/mongo.py`).

The whole stack (the Cashfree sandbox, our API and a worker, `harness/stack.py`) is shared by
every module's tests through the `stack`, `variant` and `shared_stack` fixtures.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from hypothesis import settings as hypothesis_settings
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.app import create_app
from commdesk_billing.config import Settings
from commdesk_billing.db.engine import in_transaction, make_engine
from commdesk_billing.kv.store import RedisStore
from commdesk_billing.modules.communities.mongo import community_directory
from commdesk_billing.modules.ledger import postings
from commdesk_billing.modules.ledger.journals import post_journal
from commdesk_billing.modules.wallet import service as ws
from commdesk_billing.modules.wallet.model import LotSource, Wallet
from commdesk_billing.security.jwt import Role, issue_token
from commdesk_billing.storage import LocalDocumentStore
from tests.harness import faults as fault_log
from tests.harness.broker import create_vhost, delete_vhost
from tests.harness.databases import (
    SUITE_SUMMARY,
    create_database,
    drop_database,
    drop_template,
    seal_and_verify,
)
from tests.harness.faults import faults
from tests.harness.mongo import MongoTarget, run_mongodb
from tests.harness.ratelimits import GENEROUS_RATE_LIMITS
from tests.harness.stack import quiet_stack, shared_stack, stack, stack_factory, stacks, variant

# Properties, not speed: a case that takes long on a loaded machine is not a failure (speed is
# measured by bench/, never by a test's clock). Hypothesis's 200 ms deadline made pure
# arithmetic properties flaky when the suite shared two cores with other work.
hypothesis_settings.register_profile("suite", deadline=None)
hypothesis_settings.load_profile("suite")

# The stack's fixtures serve every module's tests (payments, refunds, invoices, webhooks…);
# `faults` records what a fault test injected and what it cost (docs/reliability.md).
__all__ = ["faults", "quiet_stack", "shared_stack", "stack", "stack_factory", "stacks", "variant"]


def pytest_addoption(parser: Any) -> None:
    fault_log.add_option(parser)


# The files that take minutes, first: pytest-xdist hands files out in collection order
# (scripts/test.sh passes --no-loadscope-reorder), so a long one started last would be the
# run's tail with the other processes idle.
_LONG_FIRST = (
    "tests/contract/test_schemathesis.py",
    "tests/telemetry/test_logs_e2e.py",
    "tests/e2e/test_cli.py",
    "tests/queues/test_backbone.py",
    "tests/failure/test_broker_outage.py",
    "tests/modules/ledger/test_scale.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        path = item.nodeid.split("::", 1)[0]
        return _LONG_FIRST.index(path) if path in _LONG_FIRST else len(_LONG_FIRST)

    items.sort(key=rank)  # stable: the rest keep their order, and each file its own


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Under pytest-xdist a worker hands what only it saw (the ledger's verdicts on its own
    databases, the faults its tests injected) to the controller, which reports for the run."""
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["suite_summary"] = list(SUITE_SUMMARY)
        workeroutput["faults"] = [asdict(record) for record in fault_log.RECORDS]


def pytest_testnodedown(node: Any, error: Any) -> None:
    """pytest-xdist's controller, as each worker ends: gather its verdicts and faults."""
    output = getattr(node, "workeroutput", {})
    SUITE_SUMMARY.extend(output.get("suite_summary", ()))
    fault_log.RECORDS.extend(fault_log.Fault(**record) for record in output.get("faults", ()))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for line in SUITE_SUMMARY:
        terminalreporter.write_line(line)
    if (line := fault_log.write_report(terminalreporter.config)) is not None:
        terminalreporter.write_line(line)


@pytest.fixture(scope="session", autouse=True)
async def _template_database() -> AsyncIterator[None]:
    """Drops the run's template at the very end (first set up, so last torn down: after
    every fixture that clones it). It is made on first use, so a run that needs no
    database migrates nothing."""
    try:
        yield
    finally:
        await drop_template()


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
async def rabbitmq_url() -> AsyncIterator[str]:
    """The run's own virtual host on the broker, deleted with everything in it at the end."""
    name, url = await create_vhost()
    try:
        yield url
    finally:
        await delete_vhost(name)


@pytest.fixture(scope="session")
async def mongodb(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[MongoTarget]:
    """The run's MongoDB (about 0.4 s to start) and its own database, dropped at the end."""
    async with run_mongodb(tmp_path_factory.mktemp("mongodb")) as target:
        yield target


@pytest.fixture(scope="session")
def settings(database_url: str, rabbitmq_url: str, mongodb: MongoTarget) -> Settings:
    return Settings(
        database_url=database_url,
        rabbitmq_url=rabbitmq_url,
        mongodb_url=SecretStr(mongodb.url),
        mongodb_database=mongodb.database,
        # As many at once as before (40), 20 kept open when idle (the concurrency tests want
        # 20 in flight): stacks keep only two each, and PostgreSQL's stock limit is 100.
        db_pool_size=20,
        db_max_overflow=20,
        log_json=False,
        redis_key_prefix=f"cdb_{uuid.uuid4().hex[:10]}:",
        # The names the in-process clients use (httpx.ASGITransport, base_url below).
        allowed_hosts=("billing.test", "billing"),
        # Every test calls from 127.0.0.1, many as one user: limits no test reaches. The
        # rate-limit tests set tight ones on stacks of their own.
        **GENEROUS_RATE_LIMITS,
    )


@pytest.fixture(scope="session", autouse=True)
async def _redis_keys(settings: Settings) -> AsyncIterator[None]:
    """Every key the run wrote (all under its prefix; stacks add theirs to it) goes at the end."""
    yield
    store = RedisStore.from_settings(settings)
    try:
        await store.delete_prefix()
    finally:
        await store.aclose()


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


async def grant_bought(conn: AsyncConnection, **grant: Any) -> Any:
    """`ws.grant_credits` for credits with a cost basis, and, in the same transaction, the
    money behind them as a purchase books it (`payment_captured`: gateway clearing, deferred
    revenue, GST), so deferred revenue holds what the lots' unrecognized basis says."""
    result = await ws.grant_credits(conn, **grant)
    paid, taxable = int(grant.get("paid_paise", 0)), int(grant.get("taxable_paise", 0))
    if paid:
        await post_journal(
            conn,
            postings.payment_captured(
                payment_id=uuid.uuid4(),
                amount=paid,
                taxable=taxable,
                gst=paid - taxable,
                at=datetime.now(UTC),
            ),
        )
    return result


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
            lambda c: grant_bought(
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
) -> AsyncIterator[Any]:
    application = create_app(settings)
    # ASGITransport does not run the lifespan; hand the app the suite's engine directly.
    application.state.settings = settings
    application.state.engine = engine
    application.state.documents = LocalDocumentStore(tmp_path_factory.mktemp("api-documents"))
    application.state.communities = community_directory(settings)
    # /readyz asks it, and the rate limits count in it (under the run's prefix).
    application.state.redis = RedisStore.from_settings(settings)
    try:
        yield application
    finally:
        await application.state.communities.aclose()
        await application.state.redis.aclose()


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
