"""Overload is a 503 (issue 12): the API on a real socket, on real PostgreSQL, when the
database cannot serve it — its pool of one held by the test, a statement that outlives its
timeout behind a lock the test holds, a role PostgreSQL refuses, a port nothing listens on.

Every case answers 503 `database_unavailable` with `Retry-After`, on a connection that stays
open, moves no money and stores nothing; the same request succeeds once the resource is
free. Whatever still becomes a 500 says `Connection: close` before uvicorn closes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from commdesk_billing.app import create_app
from commdesk_billing.config import Settings
from commdesk_billing.db.engine import in_transaction
from commdesk_billing.gateway import signature
from commdesk_billing.gateway.sandbox.config import DEV_PAYOUT_CLIENT_ID, DEV_PAYOUT_CLIENT_SECRET
from commdesk_billing.modules.wallet import service as ws
from commdesk_billing.security.jwt import Role, issue_token
from tests.conftest import new_wallet
from tests.harness.faults import Recorder
from tests.harness.mongo import MongoTarget, communities
from tests.harness.servers import serving
from tests.harness.stack import webhook_body

PROBLEM = "application/problem+json"


@dataclass
class Served:
    app: FastAPI
    api: httpx.AsyncClient
    port: int
    settings: Settings

    async def debit(self, owner: str, wallet_id: uuid.UUID, key: str) -> httpx.Response:
        tok = issue_token(self.settings, sub=owner, role=Role.member)
        return await self.api.post(
            f"/v1/wallets/{wallet_id}/debits",
            json={"credits": 5, "reason": "overload test"},
            headers={"Authorization": f"Bearer {tok}", "Idempotency-Key": key},
        )

    async def webhook(self, body: bytes) -> httpx.Response:
        ts = str(int(time.time() * 1000))
        secret = self.settings.cashfree_client_secret.get_secret_value()
        return await self.api.post(
            "/v1/webhooks/cashfree",
            content=body,
            headers={
                "content-type": "application/json",
                "x-webhook-timestamp": ts,
                "x-webhook-signature": signature.sign(secret, ts, body),
                "x-webhook-version": "2025-01-01",
            },
        )

    async def signed(self, path: str, secret: SecretStr | None, body: bytes) -> httpx.Response:
        """`body` to a webhook route, signed with `secret` as Cashfree signs."""
        assert secret is not None, f"{path}: the suite's settings carry no secret for it"
        ts = str(int(time.time() * 1000))
        return await self.api.post(
            path,
            content=body,
            headers={
                "content-type": "application/json",
                "x-webhook-timestamp": ts,
                "x-webhook-signature": signature.sign(secret.get_secret_value(), ts, body),
                "x-webhook-version": "2025-01-01",
            },
        )


Serve = Callable[..., Awaitable[Served]]


@pytest.fixture
async def serve(settings: Settings, tmp_path: Path) -> AsyncIterator[Serve]:
    """Our API under uvicorn on a loopback socket, with the lifespan (its own engine from
    `settings`, so pool and timeouts are the ones given)."""
    async with AsyncExitStack() as exits:

        async def make(
            app_setup: Callable[[FastAPI], None] | None = None, **overrides: Any
        ) -> Served:
            s = settings.model_copy(
                update={"storage_dir": str(tmp_path / "documents"), **overrides}
            )
            app = create_app(s)
            if app_setup is not None:
                app_setup(app)
            url = await exits.enter_async_context(serving(app))
            api = await exits.enter_async_context(httpx.AsyncClient(base_url=url, timeout=30))
            return Served(app, api, int(url.rsplit(":", 1)[1]), s)

        yield make


def _count(reason: str) -> float:
    return REGISTRY.get_sample_value("billing_db_unavailable_total", {"reason": reason}) or 0.0


def assert_unavailable(r: httpx.Response, retry_after: int) -> None:
    assert r.status_code == 503, r.text
    assert r.headers["content-type"] == PROBLEM
    assert r.headers["retry-after"] == str(retry_after)
    assert "connection" not in r.headers  # kept alive: a 503 is an answer, not a crash
    assert r.json() == {
        "type": "urn:commdesk:billing:problem:database_unavailable",
        "title": "Service temporarily unavailable",
        "status": 503,
        "code": "database_unavailable",
        "detail": "the database is overloaded or unavailable; retry after Retry-After seconds "
        "(with the same Idempotency-Key, a repeat never applies twice)",
        "retry_after_s": retry_after,
    }


async def assert_not_ready(served: Served) -> None:
    ready = await served.api.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["postgresql"] == "down"
    assert ready.json()["status"] == "not_ready"
    live = await served.api.get("/healthz")
    assert (live.status_code, live.json()) == (200, {"status": "ok"})


@dataclass(frozen=True)
class Books:
    available: int
    lines: list[tuple[int, str, int]]  # (seq, idempotency key, balance after)
    keys: int  # idempotency records of the test's key
    webhooks: int  # stored deliveries of the test's order


async def books(engine: AsyncEngine, wallet_id: uuid.UUID, key: str, order_id: str) -> Books:
    async def read(conn: Any) -> Books:
        wallet = await ws.get_wallet(conn, wallet_id)
        lines = await ws.list_statement(conn, wallet_id, before_seq=None, limit=100)
        keys = (
            await conn.execute(
                text("SELECT count(*) FROM idempotency_keys WHERE key = :k"), {"k": key}
            )
        ).scalar_one()
        hooks = (
            await conn.execute(
                text("SELECT count(*) FROM payment_webhooks WHERE order_id = :o"), {"o": order_id}
            )
        ).scalar_one()
        return Books(
            wallet.available_credits,
            [(line.seq, line.idempotency_key, line.balance_after) for line in lines],
            int(keys),
            int(hooks),
        )

    return await in_transaction(engine, read)


def _delivery() -> tuple[str, bytes]:
    """A signed-content delivery for an order we never made: stored as `unknown_order`."""
    order_id = f"ord_overload_{uuid.uuid4().hex[:12]}"
    return order_id, webhook_body(
        order_id,
        order_amount="300.00",
        payment_amount="300.00",
        cf_payment_id=uuid.uuid4().hex[:12],
    )


async def assert_recovers(
    served: Served,
    engine: AsyncEngine,
    owner: str,
    wallet_id: uuid.UUID,
    key: str,
    order_id: str,
    body: bytes,
    before: Books,
    faults: Recorder,
    fault: str,
    what: str,
) -> None:
    """The same requests, once the database can serve them: the debit happens once, the
    delivery is stored once. What the fault cost is recorded before it is asserted."""
    r = await served.debit(owner, wallet_id, key)
    assert r.status_code == 201, r.text
    assert "idempotent-replayed" not in r.headers
    assert r.json()["wallet"]["available_credits"] == before.available - 5
    w = await served.webhook(body)
    assert (w.status_code, w.json()["status"]) == (200, "unknown_order"), w.text
    after = await books(engine, wallet_id, key, order_id)
    debits = (before.available - after.available) // 5
    faults.record(
        fault,
        injected=2,
        what=what,
        lost=max(0, 1 - debits) + max(0, 1 - after.webhooks),
        twice=max(0, debits - 1) + max(0, after.webhooks - 1),
        outcome="503 + Retry-After, nothing stored; the repeat applies once",
    )
    assert after.available == before.available - 5
    assert after.lines[1:] == before.lines
    assert after.lines[0][0] == before.lines[0][0] + 1
    assert (after.keys, after.webhooks) == (1, 1)
    ready = await served.api.get("/readyz")
    assert (ready.status_code, ready.json()["checks"]["postgresql"]) == (200, "ok")


async def test_a_full_pool_is_a_503_for_debits_webhooks_and_readiness(
    serve: Serve, engine: AsyncEngine, faults: Recorder
) -> None:
    served = await serve(db_pool_size=1, db_max_overflow=0, db_pool_timeout_s=0.2)
    owner = f"owner-{uuid.uuid4().hex}"
    wallet = await new_wallet(engine, 100, sub=owner)
    key, (order_id, body) = uuid.uuid4().hex, _delivery()
    before = await books(engine, wallet.id, key, order_id)
    counted = _count("pool_timeout")

    async with served.app.state.engine.connect() as held:  # the pool's only connection
        await held.execute(text("SELECT 1"))
        assert_unavailable(await served.debit(owner, wallet.id, key), 1)
        assert_unavailable(await served.webhook(body), 1)
        await assert_not_ready(served)
        assert _count("pool_timeout") == counted + 2

    assert await books(engine, wallet.id, key, order_id) == before
    await assert_recovers(
        served,
        engine,
        owner,
        wallet.id,
        key,
        order_id,
        body,
        before,
        faults,
        "database pool full",
        "a pool of one held by the test; a debit and a signed webhook",
    )


@contextlib.asynccontextmanager
async def forwarding(port: int, to_port: int) -> AsyncIterator[None]:
    """A loopback TCP forwarder from `port` to PostgreSQL: the database "comes back" on a
    port where nothing listened."""

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    tasks: set[asyncio.Task[None]] = set()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", to_port)
        for t in (pipe(reader, up_writer), pipe(up_reader, writer)):
            task = asyncio.create_task(t)
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    server = await asyncio.start_server(accept, "127.0.0.1", port, reuse_address=True)
    try:
        yield
    finally:
        server.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_nothing_listening_is_a_503_then_the_database_comes_back(
    serve: Serve, engine: AsyncEngine, settings: Settings, faults: Recorder
) -> None:
    port = _free_port()
    db_port = int(settings.database_url.split(":")[-1].split("/")[0])
    url = settings.database_url.replace(f":{db_port}/", f":{port}/", 1)
    served = await serve(database_url=url)
    owner = f"owner-{uuid.uuid4().hex}"
    wallet = await new_wallet(engine, 100, sub=owner)
    key, (order_id, body) = uuid.uuid4().hex, _delivery()
    before = await books(engine, wallet.id, key, order_id)
    counted = _count("connect_error")

    assert_unavailable(await served.debit(owner, wallet.id, key), 5)
    assert_unavailable(await served.webhook(body), 5)
    await assert_not_ready(served)
    assert _count("connect_error") == counted + 2
    assert await books(engine, wallet.id, key, order_id) == before

    async with forwarding(port, db_port):
        await assert_recovers(
            served,
            engine,
            owner,
            wallet.id,
            key,
            order_id,
            body,
            before,
            faults,
            "nothing listening where the database should be, then back",
            "the API pointed at a closed port; a debit and a signed webhook",
        )
        await served.app.state.engine.dispose()  # before the forwarder goes


@contextlib.asynccontextmanager
async def role_refused_by_postgresql(scratch_engine: AsyncEngine) -> AsyncIterator[str]:
    """A login role with CONNECTION LIMIT 0, allowed to work on the scratch database's
    tables once let in: PostgreSQL's real "too many connections" (53300) without filling
    the shared server's connection table. Dropped afterwards."""
    name = f"cdb_nolimit_{uuid.uuid4().hex[:10]}"
    async with scratch_engine.begin() as conn:
        await conn.execute(text(f'CREATE ROLE "{name}" LOGIN CONNECTION LIMIT 0'))
        await conn.execute(text(f'GRANT USAGE ON SCHEMA public TO "{name}"'))
        await conn.execute(
            text(f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO "{name}"')
        )
        await conn.execute(
            text(f'GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO "{name}"')
        )
    try:
        yield name
    finally:
        async with scratch_engine.begin() as conn:
            await conn.execute(text(f'DROP OWNED BY "{name}"'))
            await conn.execute(text(f'DROP ROLE "{name}"'))


async def test_too_many_connections_is_a_503_until_postgresql_lets_us_in(
    settings: Settings,
    scratch_database_url: str,
    scratch_engine: AsyncEngine,
    tmp_path: Path,
    faults: Recorder,
) -> None:
    async with role_refused_by_postgresql(scratch_engine) as role, AsyncExitStack() as exits:
        url = scratch_database_url.replace("postgres@", f"{role}@", 1)
        assert role in url
        s = settings.model_copy(
            update={"database_url": url, "storage_dir": str(tmp_path / "documents")}
        )
        app = create_app(s)
        base = await exits.enter_async_context(serving(app))
        api = await exits.enter_async_context(httpx.AsyncClient(base_url=base, timeout=30))
        served = Served(app, api, int(base.rsplit(":", 1)[1]), s)
        owner = f"owner-{uuid.uuid4().hex}"
        wallet = await new_wallet(scratch_engine, 100, sub=owner)
        key, (order_id, body) = uuid.uuid4().hex, _delivery()
        before = await books(scratch_engine, wallet.id, key, order_id)
        counted = _count("too_many_connections")

        assert_unavailable(await served.debit(owner, wallet.id, key), 2)
        assert_unavailable(await served.webhook(body), 2)
        await assert_not_ready(served)
        assert _count("too_many_connections") == counted + 2
        assert await books(scratch_engine, wallet.id, key, order_id) == before

        async with scratch_engine.begin() as conn:
            await conn.execute(text(f'ALTER ROLE "{role}" CONNECTION LIMIT -1'))
        await assert_recovers(
            served,
            scratch_engine,
            owner,
            wallet.id,
            key,
            order_id,
            body,
            before,
            faults,
            "PostgreSQL refusing connections (too many)",
            "a role with CONNECTION LIMIT 0; a debit and a signed webhook",
        )


def _with_server_timeout(url: str) -> str:
    return f"{url}?options=-c%20statement_timeout%3D100"


@pytest.mark.parametrize(
    ("side", "overrides"),
    [
        ("client", lambda s: {"db_statement_timeout_ms": 100}),
        ("server", lambda s: {"database_url": _with_server_timeout(s.database_url)}),
    ],
)
async def test_a_statement_timeout_behind_a_lock_is_a_503_and_moves_nothing(
    side: str,
    overrides: Callable[[Settings], dict[str, Any]],
    serve: Serve,
    engine: AsyncEngine,
    settings: Settings,
    faults: Recorder,
) -> None:
    """asyncpg's own timeout (BILLING_DB_STATEMENT_TIMEOUT_MS) or PostgreSQL's
    `statement_timeout` (here from the URL's `options`), while the test holds the wallet's
    row lock, or a lock on the webhook table, that the request needs."""
    served = await serve(**overrides(settings))
    owner = f"owner-{uuid.uuid4().hex}"
    wallet = await new_wallet(engine, 100, sub=owner)
    key, (order_id, body) = uuid.uuid4().hex, _delivery()
    before = await books(engine, wallet.id, key, order_id)
    counted = _count("statement_timeout")

    async with engine.connect() as holder, holder.begin():
        await holder.execute(
            text("SELECT id FROM wallets WHERE id = :w FOR UPDATE"), {"w": wallet.id}
        )
        assert_unavailable(await served.debit(owner, wallet.id, key), 2)
        # Nothing moved, and the key is free for the repeat (read past the row lock).
        assert await books(engine, wallet.id, key, order_id) == before
    async with engine.connect() as holder, holder.begin():
        await holder.execute(text("LOCK TABLE payment_webhooks IN SHARE MODE"))
        assert_unavailable(await served.webhook(body), 2)
    assert _count("statement_timeout") == counted + 2
    assert await books(engine, wallet.id, key, order_id) == before

    await assert_recovers(
        served,
        engine,
        owner,
        wallet.id,
        key,
        order_id,
        body,
        before,
        faults,
        f"statement timeout ({side} side) behind a lock the test holds",
        "the wallet row and the webhook table locked; a debit and a signed webhook",
    )


# --- every route ----------------------------------------------------------------------

_PATH_PARAMETERS = (
    "wallet_id",
    "hold_id",
    "payment_id",
    "refund_id",
    "invoice_id",
    "spend_id",
    "partner_id",
    "payee_id",
    "sponsorship_id",
    "settlement_id",
    "subscription_id",
    "mandate_id",
    "user_id",
    "review_id",
    "entry_id",
    "finding_id",
    "endpoint_id",
    "delivery_id",
    "event_id",
)
_BODIES: dict[str, Any] = {
    "POST /v1/reconciliation/findings/{finding_id}/explain": {"note": "sweep"},
    "POST /v1/reconciliation/findings/{finding_id}/resolve": {"note": "sweep"},
    "PUT /v1/billing-profile": {
        "legal_name": "Sweep Pvt Ltd",
        "address_line1": "1 Sweep Road",
        "city": "Pune",
        "postal_code": "411001",
        "state_code": "27",
    },
    "POST /v1/webhook-endpoints": {"url": "https://hooks.example.com/billing"},
    "PATCH /v1/webhook-endpoints/{endpoint_id}": {"enabled": False},
    "POST /v1/fraud/reviews/{review_id}/decision": {"decision": "release", "reason": "sweep"},
    "POST /v1/fraud/lists": {
        "list": "deny",
        "kind": "device",
        "value": "sweep-device-01",
        "reason": "sweep",
    },
    "POST /v1/wallets/{wallet_id}/debits": {"credits": 5, "reason": "sweep"},
    "POST /v1/wallets/{wallet_id}/grants": {"credits": 5, "reason": "sweep"},
    "POST /v1/wallets/{wallet_id}/holds": {"credits": 5, "reason": "sweep"},
    "POST /v1/holds/{hold_id}/capture": {"credits": 1},
    "POST /v1/holds/{hold_id}/release": {},
    "POST /v1/payments/orders": {"pack_code": "pack_300", "customer_phone": "9876543210"},
    "POST /v1/payments/{payment_id}/refunds": {"reason": "sweep refund"},
    "POST /v1/communities/{community_id}/spends": {"credits": 5, "reason": "sweep"},
    "PUT /v1/communities/{community_id}/fee-plan": {"fee_bps": 900, "reason": "sweep"},
    "POST /v1/community-spends/{spend_id}/reversal": {"reason": "sweep"},
    "POST /v1/partners": {"id": "sweep-partner", "name": "Sweep", "share_bps": 100},
    "PUT /v1/partners/{partner_id}": {"name": "Sweep", "share_bps": 100, "reason": "sweep"},
    "POST /v1/partners/{partner_id}/attributions": {
        "user_id": "sweep-user",
        "valid_from": "2026-12-01T00:00:00+05:30",
    },
    "POST /v1/payees": {"kind": "partner", "subject_id": "sweep-partner", "display_name": "S"},
    "PUT /v1/payees/{payee_id}/payout-account": {
        "method": "bank",
        "account_holder": "Sweep Payee",
        "account_number": "12345678901234",
        "ifsc": "UTIB0000123",
    },
    "POST /v1/payees/{payee_id}/suspend": {"reason": "sweep"},
    "POST /v1/payees/{payee_id}/reactivate": {"reason": "sweep"},
    "POST /v1/sponsorships": {
        "amount_paise": 100_000,
        "purpose": "sweep",
        "customer_phone": "9876543210",
    },
    "POST /v1/settlements/runs": {},
    "POST /v1/subscription-plans": {
        "code": "sweep-plan",
        "name": "Sweep",
        "price_credits": 100,
        "interval_unit": "month",
    },
    "POST /v1/subscriptions": {"plan_code": "sweep-plan"},
    "POST /v1/subscriptions/{subscription_id}/cancel": {"at_period_end": True},
    "POST /v1/subscriptions/{subscription_id}/change": {"plan_code": "sweep-plan"},
    "POST /v1/communities/{community_id}/split-vendor": {
        "name": "Sweep Vendor",
        "email": "sweep@example.com",
        "phone": "9876543210",
        "account_type": "BUSINESS",
        "business_type": "Education",
        "pan": "ABCDE1234F",
    },
    "PUT /v1/wallets/{wallet_id}/auto-recharge": {
        "enabled": True,
        "pack_code": "pack_150",
        "customer_phone": "9876543210",
    },
    "POST /v1/usage/events": {
        "events": [
            {
                "event_id": "sweep-1",
                "meter": "sweep",
                "quantity": 1,
                "wallet_id": "00000000-0000-4000-8000-000000000001",
                "occurred_at": "2026-12-07T10:00:00+05:30",
            }
        ]
    },
    "POST /v1/usage/price-book": {
        "meter": "sweep",
        "tiers": [{"up_to": None, "millicredits_per_unit": 1000}],
        "reason": "sweep",
    },
    "POST /v1/mandates": {
        "max_amount_paise": 50_000,
        "customer_phone": "9876543210",
        "customer_email": "sweep@example.com",
    },
}
# Query strings a route needs to get as far as the database.
_PERIOD = {"from": "2026-11-01", "to": "2026-11-30"}
_QUERIES = {
    "GET /v1/usage/summary": {"wallet_id": "00000000-0000-4000-8000-000000000001"},
    "GET /v1/analytics/summary": _PERIOD,
    "GET /v1/analytics/daily": _PERIOD,
    "GET /v1/analytics/payments": _PERIOD,
    "GET /v1/analytics/trial-balance": _PERIOD,
    "GET /v1/analytics/gst-summary": _PERIOD,
}
# Attributions come from another CommDesk service, with its scope.
_AS_SERVICE = {"POST /v1/partners/{partner_id}/attributions"}
# Usage is reported by a CommDesk service with `usage:write`.
_AS_USAGE_SERVICE = {"POST /v1/usage/events"}

# Only people buy, and only the buyer retries; finance_admin is let through everywhere else.
_AS_BUYER = {
    "POST /v1/payments/orders",
    "POST /v1/payments/{payment_id}/retry",
    "POST /v1/payments/{payment_id}/cancel",
}
# Only sponsors sponsor, and list their own sponsorships.
_AS_SPONSOR = {"POST /v1/sponsorships", "GET /v1/sponsorships"}
# Authenticated by Cashfree's signature, not a token: signed with the secret each route
# checks (PG's for vendor settlements, Payouts' for transfers).
_SIGNED = {
    "/v1/webhooks/cashfree-payouts": (
        "cashfree_payout_client_secret",
        b'{"type": "TRANSFER_SUCCESS", "event_time": "2026-12-07T10:00:00",'
        b' "data": {"transfer_id": "stl_sweep", "status": "SUCCESS"}}',
    ),
    "/v1/webhooks/cashfree/vendor-settlements": (
        "cashfree_client_secret",
        b'{"type": "VENDOR_SETTLEMENT_SUCCESS", "event_time": "2026-12-07T10:00:00+05:30",'
        b' "data": {"settlement": {"settlement_id": 1, "status": "SUCCESS",'
        b' "vendor_id": "cdbc_sweep", "settlement_amount": 1.00}}}',
    ),
    "/v1/webhooks/cashfree/subscriptions": (
        "cashfree_client_secret",
        b'{"type": "SUBSCRIPTION_STATUS_CHANGED", "event_time": "2026-12-07T10:00:00",'
        b' "data": {"subscription_details": {"subscription_id": "cdbm_sweep",'
        b' "subscription_status": "ACTIVE"}}}',
    ),
}


async def test_every_route_answers_503_when_the_database_is_unreachable(
    serve: Serve, settings: Settings, faults: Recorder, mongodb: MongoTarget
) -> None:
    """Each `/v1` operation of the OpenAPI document, called as a caller it lets through,
    with the database away: 503 and Retry-After from all of them (a new route needing a
    body gets a 422 here until it is given one above)."""
    db_port = int(settings.database_url.split(":")[-1].split("/")[0])
    served = await serve(
        database_url=settings.database_url.replace(f":{db_port}/", f":{_free_port()}/", 1),
        # Payouts configured, so its webhook route gets as far as the database.
        cashfree_payout_client_id=DEV_PAYOUT_CLIENT_ID,
        cashfree_payout_client_secret=SecretStr(DEV_PAYOUT_CLIENT_SECRET),
    )
    # A community MongoDB knows (it is up): the community routes get as far as the database.
    community = f"sweep-{uuid.uuid4().hex[:8]}"
    async with communities(mongodb) as collection:
        await collection.insert_one(
            {"_id": community, "name": "Sweep", "owner_ids": [], "status": "active"}
        )
    tok = issue_token(served.settings, sub="finance-sweep", role=Role.finance_admin)
    buyer = issue_token(served.settings, sub="buyer-sweep", role=Role.member)
    sponsor = issue_token(served.settings, sub="sponsor-sweep", role=Role.sponsor)
    attributor = issue_token(
        served.settings, sub="svc-sweep", role=Role.service, scopes=["partners:attribute"]
    )
    reporter = issue_token(
        served.settings, sub="svc-usage-sweep", role=Role.service, scopes=["usage:write"]
    )
    answers: dict[str, tuple[int, str | None]] = {}
    for path, ops in served.app.openapi()["paths"].items():
        if not path.startswith("/v1"):
            continue
        for method in ops:
            route = f"{method.upper()} {path}"
            url = path.format(
                community_id=community, seq=1, **{p: uuid.uuid4() for p in _PATH_PARAMETERS}
            )
            if path == "/v1/webhooks/cashfree":
                r = await served.webhook(_delivery()[1])
            elif path in _SIGNED:
                setting, body = _SIGNED[path]
                r = await served.signed(path, getattr(served.settings, setting), body)
            else:
                headers = {"Authorization": f"Bearer {tok}", "Idempotency-Key": uuid.uuid4().hex}
                if route in _AS_BUYER:
                    headers["Authorization"] = f"Bearer {buyer}"
                if route in _AS_SERVICE:
                    headers["Authorization"] = f"Bearer {attributor}"
                if route in _AS_SPONSOR:
                    headers["Authorization"] = f"Bearer {sponsor}"
                if route in _AS_USAGE_SERVICE:
                    headers["Authorization"] = f"Bearer {reporter}"
                body = _BODIES.get(route)
                if route == "POST /v1/sponsorships":
                    body = {**_BODIES[route], "community_id": community}
                r = await served.api.request(
                    method.upper(), url, headers=headers, json=body, params=_QUERIES.get(route)
                )
            answers[route] = (r.status_code, r.headers.get("retry-after"))
    others = {route: a for route, a in answers.items() if a != (503, "5")}
    faults.record(
        "every `/v1` route with the database unreachable",
        injected=len(answers),
        what="one call per route of the OpenAPI document",
        lost=None,
        twice=None,
        outcome=f"{len(answers) - len(others)} of {len(answers)} answered 503 + Retry-After",
    )
    assert len(answers) >= 20
    assert others == {}


# --- 500s and keep-alive, on a raw socket -----------------------------------------------


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, dict[str, str], bytes]:
    writer.write(request)
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        if line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), 10)
    return int(status_line.split()[1]), headers, body


def _get(path: str, token: str | None = None) -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return f"GET {path} HTTP/1.1\r\nHost: billing.test\r\n{auth}\r\n".encode()


def _crash_route(app: FastAPI) -> None:
    async def crash() -> None:
        raise RuntimeError("an unexpected failure")

    app.add_api_route("/_test/crash", crash, methods=["GET"])


@pytest.mark.parametrize(
    ("case", "overrides", "path"),
    [
        # A real failure no handler knows: the database named does not exist (3D000).
        ("missing database", {"database_url": "MISSING"}, "/v1/wallets/me"),
        # Any exception at all.
        ("route raises", {"app_setup": _crash_route}, "/_test/crash"),
    ],
)
async def test_a_500_says_connection_close_and_the_server_closes_it(
    case: str, overrides: dict[str, Any], path: str, serve: Serve, settings: Settings
) -> None:
    if overrides.get("database_url") == "MISSING":
        overrides = {
            "database_url": settings.database_url.rsplit("/", 1)[0]
            + f"/cdb_missing_{uuid.uuid4().hex[:8]}"
        }
    served = await serve(**overrides)
    tok = issue_token(served.settings, sub=f"user-{uuid.uuid4().hex}", role=Role.member)
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    try:
        status, headers, body = await _exchange(reader, writer, _get(path, tok))
        assert status == 500
        assert headers["connection"] == "close"
        assert len(headers["x-request-id"]) == 32  # support can find the request's logs
        assert headers["content-type"] == PROBLEM
        assert json.loads(body)["code"] == "internal_error"
        # uvicorn closes the connection after it: the client was told.
        assert await asyncio.wait_for(reader.read(1), 10) == b""
    finally:
        writer.close()


async def test_a_503_keeps_the_connection_alive(serve: Serve, settings: Settings) -> None:
    db_port = int(settings.database_url.split(":")[-1].split("/")[0])
    served = await serve(
        database_url=settings.database_url.replace(f":{db_port}/", f":{_free_port()}/", 1),
        # Payouts configured, so its webhook route gets as far as the database.
        cashfree_payout_client_id=DEV_PAYOUT_CLIENT_ID,
        cashfree_payout_client_secret=SecretStr(DEV_PAYOUT_CLIENT_SECRET),
    )
    tok = issue_token(served.settings, sub=f"user-{uuid.uuid4().hex}", role=Role.member)
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    try:
        status, headers, body = await _exchange(reader, writer, _get("/v1/wallets/me", tok))
        assert (status, headers["retry-after"], json.loads(body)["code"]) == (
            503,
            "5",
            "database_unavailable",
        )
        assert "connection" not in headers
        status, _, body = await _exchange(reader, writer, _get("/healthz"))
        assert (status, json.loads(body)) == (200, {"status": "ok"})
    finally:
        writer.close()
