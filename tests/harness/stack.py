"""The whole purchase path for real: the Cashfree sandbox and our API on loopback sockets,
a worker on RabbitMQ (queue names of this run's own), PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from string import Template
from typing import Any

import aio_pika
import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from commdesk_billing import wiring
from commdesk_billing.app import create_app
from commdesk_billing.config import Settings
from commdesk_billing.db.engine import make_engine
from commdesk_billing.gateway import signature
from commdesk_billing.gateway.sandbox.app import create_sandbox_app
from commdesk_billing.gateway.sandbox.config import (
    DEV_PAYOUT_CLIENT_ID,
    DEV_PAYOUT_CLIENT_SECRET,
    SandboxConfig,
)
from commdesk_billing.modules.payments import state as payment_state
from commdesk_billing.modules.refunds import model as refund_model
from commdesk_billing.queues.topology import Names, delete
from commdesk_billing.security.jwt import Role, issue_token
from tests.harness.databases import create_database, drop_database, seal_and_verify
from tests.harness.servers import bound_socket, serving, url_of


def _ends(allowed: Mapping[Any, frozenset[Any]], statuses: Iterable[Any]) -> frozenset[str]:
    """The statuses no move starts from."""
    sources = {str(s) for froms in allowed.values() for s in froms}
    return frozenset(str(s) for s in statuses) - sources


PAYMENT_ENDS = _ends(payment_state.ALLOWED, payment_state.Status)
REFUND_ENDS = _ends(refund_model.ALLOWED, refund_model.RefundStatus)


@dataclass
class Stack:
    settings: Settings
    api: httpx.AsyncClient
    sandbox: httpx.AsyncClient  # authenticated as our merchant
    sandbox_url: str
    api_url: str
    engine: AsyncEngine

    def token(self, sub: str | None = None, role: Role = Role.member) -> str:
        return issue_token(self.settings, sub=sub or f"buyer-{uuid.uuid4().hex}", role=role)

    async def buy(
        self, tok: str, *, pack_code: str | None = "pack_300", amount_paise: int | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"customer_phone": "9876543210"}
        if amount_paise is not None:
            body["amount_paise"] = amount_paise
        else:
            body["pack_code"] = pack_code
        r = await self.api.post(
            "/v1/payments/orders",
            json=body,
            headers={"Authorization": f"Bearer {tok}", "Idempotency-Key": uuid.uuid4().hex},
        )
        assert r.status_code == 201, r.text
        return dict(r.json())

    async def pay(
        self, order: dict[str, Any], method: str = "upi", outcome: str = "success"
    ) -> str:
        """What a person does on the hosted checkout page (a plain form post)."""
        page = await self.sandbox.get(order["checkout_url"])
        assert page.status_code == 200 and "checkout-form" in page.text, page.text[:500]
        r = await self.sandbox.post(
            "/pg/view/checkout",
            data={
                "payment_session_id": order["payment_session_id"],
                "payment_method": method,
                "outcome": outcome,
            },
        )
        assert r.status_code == 200, r.text[:500]
        return r.text

    async def payment(self, tok: str, payment_id: str) -> dict[str, Any]:
        r = await self.api.get(
            f"/v1/payments/{payment_id}", headers={"Authorization": f"Bearer {tok}"}
        )
        assert r.status_code == 200, r.text
        return dict(r.json())

    async def wait_status(
        self, tok: str, payment_id: str, wanted: set[str], timeout_s: float = 20
    ) -> dict[str, Any]:
        """Poll until the payment is in one of `wanted`. A status it can never leave
        (CREDITED, REVIEW) that is not wanted fails at once, not at the timeout."""
        deadline = time.monotonic() + timeout_s
        last: dict[str, Any] = {}
        while time.monotonic() < deadline:
            last = await self.payment(tok, payment_id)
            if last["status"] in wanted:
                return last
            if last["status"] in PAYMENT_ENDS:
                raise AssertionError(f"payment ended {last['status']}, wanted {wanted}: {last}")
            await asyncio.sleep(0.1)
        raise AssertionError(f"payment stayed {last.get('status')}, wanted {wanted}: {last}")

    async def credited(self, *, pack_code: str = "pack_300") -> tuple[str, dict[str, Any]]:
        """A buyer's token and their credited purchase of `pack_code`."""
        tok = self.token()
        order = await self.buy(tok, pack_code=pack_code)
        await self.pay(order)
        return tok, await self.wait_status(tok, order["id"], {"CREDITED"})

    async def refund(
        self,
        payment_id: str,
        *,
        amount_paise: int | None = None,
        reason: str = "customer asked",
        tok: str | None = None,
        key: str | None = None,
    ) -> httpx.Response:
        body: dict[str, Any] = {"reason": reason}
        if amount_paise is not None:
            body["amount_paise"] = amount_paise
        return await self.api.post(
            f"/v1/payments/{payment_id}/refunds",
            json=body,
            headers={
                "Authorization": f"Bearer {tok or self.token('finance-1', Role.finance_admin)}",
                "Idempotency-Key": key or uuid.uuid4().hex,
            },
        )

    async def get_refund(self, refund_id: str) -> dict[str, Any]:
        """The refund as it is now (as finance_admin sees it)."""
        tok = self.token("finance-1", Role.finance_admin)
        r = await self.api.get(
            f"/v1/refunds/{refund_id}", headers={"Authorization": f"Bearer {tok}"}
        )
        assert r.status_code == 200, r.text
        return dict(r.json())

    async def wait_refund(
        self, refund_id: str, wanted: set[str], timeout_s: float = 20
    ) -> dict[str, Any]:
        """Poll until the refund is in one of `wanted`. An end state (SUCCESS, FAILED,
        CANCELLED: a refund never leaves one) that is not wanted fails at once. To assert a
        refund is *still* in a state, read it once with `get_refund`."""
        deadline = time.monotonic() + timeout_s
        last: dict[str, Any] = {}
        while time.monotonic() < deadline:
            last = await self.get_refund(refund_id)
            if last["status"] in wanted:
                return last
            if last["status"] in REFUND_ENDS:
                raise AssertionError(f"refund ended {last['status']}, wanted {wanted}: {last}")
            await asyncio.sleep(0.1)
        raise AssertionError(f"refund stayed {last.get('status')}, wanted {wanted}: {last}")

    async def wallet(self, tok: str) -> dict[str, Any]:
        r = await self.api.get("/v1/wallets/me", headers={"Authorization": f"Bearer {tok}"})
        assert r.status_code == 200, r.text
        return dict(r.json())

    async def faults(self, **faults: Any) -> None:
        r = await self.sandbox.patch("/_sandbox/faults", json=faults)
        assert r.status_code == 200, r.text

    async def signed_webhook(
        self,
        body: bytes,
        *,
        timestamp: str | None = None,
        secret: str | None = None,
        extra: dict[str, str] | None = None,
    ) -> httpx.Response:
        ts = timestamp or str(int(time.time() * 1000))
        key = secret or self.settings.cashfree_client_secret.get_secret_value()
        headers = {
            "content-type": "application/json",
            "x-webhook-timestamp": ts,
            "x-webhook-signature": signature.sign(key, ts, body),
            "x-webhook-version": "2025-01-01",
            "x-webhook-attempt": "1",
            **(extra or {}),
        }
        return await self.api.post("/v1/webhooks/cashfree", content=body, headers=headers)

    async def scalar(self, sql: str, **params: Any) -> Any:
        async with self.engine.connect() as conn:
            return (await conn.execute(text(sql), params)).scalar()

    async def execute(self, sql: str, **params: Any) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(text(sql), params)


FAULTS_OFF = {
    "latency_ms": 0,
    "error_rate": 0.0,
    "webhook_drop_rate": 0.0,
    "webhook_duplicates": 1,
    "webhook_reorder_window_ms": 0,
    "webhook_jitter_ms": 0,
}

StackFactory = Callable[..., Awaitable[Stack]]

FRAUD_RULES_OFF: dict[str, Any] = {
    f"fraud_{rule}_weight": 0
    for rule in (
        "user_velocity",
        "ip_velocity",
        "device_velocity",
        "failed_burst",
        "device_accounts",
        "new_account",
        "duplicate",
        "refund_ratio",
        "drain",
        "mismatch",
        "instrument_velocity",
        "instrument_accounts",
    )
}


@pytest.fixture(scope="session")
async def stack_factory(
    settings: Settings, engine: AsyncEngine, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[StackFactory]:
    """Builds stacks (sandbox + API + worker); everything is torn down at the session's end."""
    documents = tmp_path_factory.mktemp("documents")
    async with AsyncExitStack() as exits:
        prefixes: list[Names] = []

        async def make(
            *,
            own_database: bool = True,
            worker: bool = True,
            scope: AsyncExitStack | None = None,
            **overrides: Any,
        ) -> Stack:
            """Every stack gets a database of its own: its worker's outbox relay would
            otherwise publish other tests' events (on the suite's database) to its queues.
            `worker=False`: no worker at all (no relay, no consumers, no queues declared):
            what is announced stays in the outbox, as while the broker is away.
            `scope`: torn down when that exit stack closes (a test's own stacks, see
            `stacks`) instead of at the session's end, so their connections do not add up."""
            ex = exits if scope is None else scope
            stack_engine = engine
            if own_database:
                name = f"cdb_stack_{uuid.uuid4().hex[:12]}"
                url = await create_database(name)
                ex.push_async_callback(drop_database, name)
                ex.push_async_callback(seal_and_verify, url, "a payments stack")
                # Bursts get their connections (overflow); only two stay open when idle, as
                # every stack lives until the run ends and PostgreSQL's stock limit is 100.
                stack_engine = make_engine(
                    Settings(database_url=url, db_pool_size=2, db_max_overflow=18)
                )
                ex.push_async_callback(stack_engine.dispose)
                overrides["database_url"] = url
            sandbox_sock, api_sock = bound_socket(), bound_socket()
            sandbox_url, api_url = url_of(sandbox_sock), url_of(api_sock)
            prefix = f"t{uuid.uuid4().hex[:10]}."
            s = settings.model_copy(
                update={
                    # The stack's API: up to 32 connections at once, two kept when idle.
                    "db_pool_size": 2,
                    "db_max_overflow": 30,
                    "rabbitmq_queue_prefix": prefix,
                    "redis_key_prefix": settings.redis_key_prefix + prefix,
                    "retry_delays_s": (0.2, 0.4, 0.8),
                    "max_attempts": 4,
                    "relay_idle_s": 0.05,
                    "cashfree_base_url": f"{sandbox_url}/pg",
                    "cashfree_checkout_url": f"{sandbox_url}/pg/view/checkout"
                    "?payment_session_id={payment_session_id}",
                    "public_base_url": api_url,
                    "cashfree_timeout_s": 5.0,
                    "cashfree_max_retries": 2,
                    "payment_sync_after_s": 1.0,
                    "payment_sync_every_s": 0.3,
                    "max_open_orders_per_user": 50,
                    # Every test buys from 127.0.0.1, many times a second: the fraud rules
                    # are off here (weights 0; scoring still runs and is recorded). Fraud's
                    # own tests turn them on with tight limits.
                    **FRAUD_RULES_OFF,
                    "refund_sync_after_s": 1.0,
                    "storage_dir": str(documents / prefix.rstrip(".")),
                    # Payouts: the sandbox's own pair for that app (settlements).
                    "cashfree_payout_base_url": f"{sandbox_url}/payout",
                    "cashfree_verification_base_url": f"{sandbox_url}/verification",
                    "cashfree_payout_client_id": DEV_PAYOUT_CLIENT_ID,
                    "cashfree_payout_client_secret": SecretStr(DEV_PAYOUT_CLIENT_SECRET),
                    "cashfree_payout_timeout_s": 5.0,
                    **overrides,
                }
            )
            if worker and scope is None:
                prefixes.append(Names(prefix, len(s.retry_delays_s)))
            elif worker:
                scope.push_async_callback(
                    _delete_queues, settings, Names(prefix, len(s.retry_delays_s))
                )
            sandbox_cfg = SandboxConfig(
                client_id=s.cashfree_client_id,
                client_secret=s.cashfree_client_secret.get_secret_value(),
                settle_delay_s=0.2,
                refund_delay_s=0.5,
                expiry_sweep_s=0.5,
                webhook_retry_schedule_s=(0.3, 0.6, 1.2),
                webhook_timeout_s=5.0,
                rate_limit_profile="off",
                seed=7,
            )
            await ex.enter_async_context(serving(create_sandbox_app(sandbox_cfg), sandbox_sock))
            await ex.enter_async_context(serving(create_app(s), api_sock))
            if worker:
                await ex.enter_async_context(wiring.worker(s, engine=stack_engine))
            api = await ex.enter_async_context(httpx.AsyncClient(base_url=api_url, timeout=30))
            sandbox = await ex.enter_async_context(
                httpx.AsyncClient(
                    base_url=sandbox_url,
                    timeout=30,
                    headers={
                        "x-client-id": s.cashfree_client_id,
                        "x-client-secret": s.cashfree_client_secret.get_secret_value(),
                        "x-api-version": "2025-01-01",
                    },
                )
            )
            return Stack(s, api, sandbox, sandbox_url, api_url, stack_engine)

        try:
            yield make
        finally:
            await exits.aclose()
            connection = await aio_pika.connect(settings.rabbitmq_url)
            async with connection:
                channel = await connection.channel()
                for names in prefixes:
                    await delete(channel, names)


async def _delete_queues(settings: Settings, names: Names) -> None:
    connection = await aio_pika.connect(settings.rabbitmq_url)
    async with connection:
        await delete(await connection.channel(), names)


@pytest.fixture
async def stacks(stack_factory: StackFactory) -> AsyncIterator[StackFactory]:
    """Stacks that live for one test (a sandbox whose clock the test moves by days): torn
    down at its end (API, worker, database, queues), so a run's connections stay within
    PostgreSQL's stock 100 however many such tests there are."""
    async with AsyncExitStack() as scope:

        async def make(**overrides: Any) -> Stack:
            return await stack_factory(scope=scope, **overrides)

        yield make


@pytest.fixture(scope="session")
async def shared_stack(stack_factory: StackFactory) -> Stack:
    return await stack_factory()


@pytest.fixture(scope="session")
async def quiet_stack(stack_factory: StackFactory) -> Stack:
    """A stack with no worker (a database, sandbox and API of its own): everything announced
    stays in its outbox, as while RabbitMQ is away. Tests drive its scheduler jobs by hand."""
    # Small pools: it lives for the whole run, and the wallet races need the connections.
    return await stack_factory(worker=False, db_pool_size=2, db_max_overflow=4)


@pytest.fixture
async def variant(shared_stack: Stack) -> AsyncIterator[Callable[..., Awaitable[Stack]]]:
    """The shared stack seen through a second API process with other settings (over real
    HTTP, on the same database, sandbox and workers). Needs no queues of its own: a stack of
    its own would add fifty quorum queues to the broker for one test."""
    async with AsyncExitStack() as exits:

        async def make(**overrides: Any) -> Stack:
            sock = bound_socket()
            s = shared_stack.settings.model_copy(update=overrides)
            url = await exits.enter_async_context(serving(create_app(s), sock))
            api = await exits.enter_async_context(httpx.AsyncClient(base_url=url, timeout=30))
            return Stack(
                s, api, shared_stack.sandbox, shared_stack.sandbox_url, url, shared_stack.engine
            )

        yield make


@pytest.fixture
async def stack(shared_stack: Stack) -> AsyncIterator[Stack]:
    await shared_stack.faults(**FAULTS_OFF)
    yield shared_stack
    await shared_stack.faults(**FAULTS_OFF)


_WEBHOOK = Template(
    '{"data":{"order":{"order_id":"$order_id","order_amount":$order_amount,'
    '"order_currency":"INR","order_tags":null},"payment":{"cf_payment_id":"$cf_payment_id",'
    '"payment_status":"$status","payment_amount":$payment_amount,"payment_currency":"INR",'
    '"payment_message":"test","payment_time":"2026-11-26T12:00:00+05:30",'
    '"bank_reference":"1234","auth_id":null,"payment_method":{"upi":{"channel":"collect",'
    '"upi_id":"testsuccess@gocash"}},"payment_group":"upi"},'
    '"customer_details":{"customer_id":"c1","customer_phone":"9876543210"}},'
    '"event_time":"2026-11-26T12:00:01+05:30","type":"PAYMENT_${status}_WEBHOOK"}'
)


def webhook_body(
    order_id: str,
    *,
    order_amount: str,
    payment_amount: str,
    cf_payment_id: str,
    status: str = "SUCCESS",
) -> bytes:
    """A Cashfree payment webhook, written as Cashfree writes it (amounts with two decimals)."""
    doc = _WEBHOOK.substitute(
        order_id=order_id,
        order_amount=order_amount,
        cf_payment_id=cf_payment_id,
        status=status,
        payment_amount=payment_amount,
    )
    json.loads(doc)  # it must stay valid JSON
    return doc.encode()
