"""The worker as operators run it: a process that says whether it is alive and ready, and
stops within seconds of SIGTERM whatever it is doing — even connecting to a broker that
accepts TCP and never answers AMQP."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from commdesk_billing.config import Settings
from commdesk_billing.stack import free_port
from tests.harness.faults import Recorder

pytestmark = pytest.mark.slow


async def _wedged_broker() -> tuple[asyncio.Server, int]:
    """Accepts connections, reads whatever comes, never says a word."""

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await reader.read(1024):
                pass
        finally:
            writer.close()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    return server, int(server.sockets[0].getsockname()[1])


async def _worker(env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "commdesk_billing.cli",
        "worker",
        env={**os.environ, "BILLING_LOG_JSON": "false", **env},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


async def _get(url: str) -> httpx.Response | None:
    async with httpx.AsyncClient(timeout=2) as client:
        try:
            return await client.get(url)
        except httpx.TransportError:
            return None


async def _until(url: str, status: int, timeout_s: float) -> httpx.Response:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if (r := await _get(url)) is not None and r.status_code == status:
            return r
        await asyncio.sleep(0.2)
    raise AssertionError(f"{url} did not answer {status} within {timeout_s} s")


async def _terminate(proc: asyncio.subprocess.Process) -> float:
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), timeout=30)
    finally:
        if proc.returncode is None:
            proc.kill()
    return time.monotonic() - started


@pytest.fixture
async def wedge() -> AsyncIterator[int]:
    server, port = await _wedged_broker()
    try:
        yield port
    finally:
        server.close()


async def test_a_worker_stuck_connecting_is_alive_not_ready_and_stops_on_sigterm(
    database_url: str, wedge: int, faults: Recorder
) -> None:
    health = free_port()
    proc = await _worker(
        {
            "BILLING_DATABASE_URL": database_url,
            "BILLING_RABBITMQ_URL": f"amqp://guest:guest@127.0.0.1:{wedge}/",
            "BILLING_WORKER_METRICS_PORT": str(health),
        }
    )
    try:
        alive = await _until(f"http://127.0.0.1:{health}/healthz", 200, 30)
        assert alive.json() == {"status": "alive"}
        ready = await _get(f"http://127.0.0.1:{health}/readyz")
        assert ready is not None and ready.status_code == 503
        assert ready.json() == {
            "status": "not_ready",
            "checks": {"broker": False, "consumers": False, "relay": False},
        }
    finally:
        took = await _terminate(proc)
    faults.record(
        "a broker that accepts TCP and never answers AMQP, worker starting",
        injected=2,
        what="a wedged socket, then SIGTERM while the worker connects",
        lost=None,
        twice=None,
        outcome="alive, `/readyz` 503; exits 0 within 8 s of SIGTERM",
    )
    assert proc.returncode == 0
    assert took < 8, f"SIGTERM took {took:.1f} s while connecting"


async def test_a_connected_worker_is_ready_and_stops_on_sigterm(
    database_url: str, settings: Settings
) -> None:
    health = free_port()
    proc = await _worker(
        {
            "BILLING_DATABASE_URL": database_url,
            "BILLING_RABBITMQ_URL": settings.rabbitmq_url,
            "BILLING_RABBITMQ_QUEUE_PREFIX": f"wp{os.getpid()}.",
            "BILLING_WORKER_METRICS_PORT": str(health),
        }
    )
    try:
        ready = await _until(f"http://127.0.0.1:{health}/readyz", 200, 60)
        assert ready.json() == {
            "status": "ready",
            "checks": {"broker": True, "consumers": True, "relay": True},
        }
        metrics = await _get(f"http://127.0.0.1:{health}/metrics")
        assert metrics is not None and "billing_outbox_backlog" in metrics.text
    finally:
        took = await _terminate(proc)
    assert proc.returncode == 0
    assert took < 15, f"SIGTERM took {took:.1f} s"


async def _cli(env: dict[str, str], *args: str) -> tuple[int, str, str, float]:
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "commdesk_billing.cli",
        *args,
        env={**os.environ, "BILLING_LOG_JSON": "false", **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode(), time.monotonic() - started


async def test_operator_tools_name_a_wedged_broker_and_print_database_facts_first(
    database_url: str, wedge: int, faults: Recorder
) -> None:
    env = {
        "BILLING_DATABASE_URL": database_url,
        "BILLING_RABBITMQ_URL": f"amqp://guest:guest@127.0.0.1:{wedge}/",
        "BILLING_RABBITMQ_CONNECT_TIMEOUT_S": "2",
    }
    code, out, err, took = await _cli(env, "queues", "status")
    assert code == 4  # a dependency did not answer
    assert out.splitlines()[0].startswith("outbox: ")  # PostgreSQL's part came first
    assert err.splitlines()[-1].startswith(
        f"Error: RabbitMQ at 127.0.0.1:{wedge} did not answer in time: it accepts TCP but "
        "does not answer AMQP (connect timeout 2 s"
    )
    assert took < 30, took
    code, out, err, took = await _cli(env, "dlq", "list", "wallet.debit")
    faults.record(
        "the same wedge, operator tools",
        injected=2,
        what="`queues status` and `dlq list` against the wedged socket",
        lost=None,
        twice=None,
        outcome="each names the wedge within 30 s; the outbox line prints first",
    )
    assert code == 4 and out == ""
    assert "accepts TCP but does not answer AMQP" in err.splitlines()[-1]
    assert took < 30, took


async def test_operator_tools_name_a_broker_that_is_not_there(
    database_url: str, faults: Recorder
) -> None:
    closed = free_port()  # nothing listens here
    code, out, err, _ = await _cli(
        {
            "BILLING_DATABASE_URL": database_url,
            "BILLING_RABBITMQ_URL": f"amqp://guest:guest@127.0.0.1:{closed}/",
        },
        "dlq",
        "purge",
        "wallet.debit",
        "--yes",
    )
    faults.record(
        "no broker at all, operator tools",
        injected=1,
        what="`dlq purge --yes` against a closed port",
        lost=None,
        twice=None,
        outcome="names the address; nothing purged",
    )
    assert code == 4 and out == ""
    assert err.splitlines()[-1].startswith(f"Error: cannot reach RabbitMQ at 127.0.0.1:{closed}: ")
