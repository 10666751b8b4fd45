"""The broker going away under a running worker — every connection refused, cut off mid-stream,
wedged while the worker reconnects — and workers killed or stopped in the middle of it.

Nothing may be lost and nothing applied twice: every debit committed to the outbox is
applied exactly once, whatever the broker and the worker were doing when it was written.
The cut-offs go through a proxy (`tests/harness/proxy.py`), so the worker really loses its
connection and really fails to reconnect while the shared broker stays up.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from commdesk_billing import wiring
from commdesk_billing.config import Settings
from commdesk_billing.db.engine import in_transaction
from commdesk_billing.modules.wallet import service as ws
from commdesk_billing.queues.topology import Names
from commdesk_billing.stack import free_port
from tests.conftest import new_wallet
from tests.harness.faults import Recorder
from tests.harness.proxy import FaultProxy, fault_proxy
from tests.queues.conftest import (
    applied,
    applied_at_least,
    debits_via_outbox,
    depth_is,
    duplicates_seen,
    scalar,
    wait_for,
)

pytestmark = pytest.mark.slow


async def _unsent(engine: AsyncEngine, tag: str) -> int:
    return int(
        await scalar(
            engine,
            "SELECT count(*) FROM outbox WHERE sent_at IS NULL AND body LIKE :t",
            t=f"%{tag}%",
        )
    )


async def _balances_right(engine: AsyncEngine, wallets: list[uuid.UUID], expected: int) -> int:
    """How many wallets are not at `expected` or disagree with their own ledger."""
    wrong = 0
    for wid in wallets:
        report = await in_transaction(engine, lambda c, w=wid: ws.sync_balance(c, w))
        wrong += not (report.consistent and report.row_available == expected)
    return wrong


async def test_broker_outage_loses_nothing(
    engine: AsyncEngine, qsettings: Settings, proxy: FaultProxy, faults: Recorder
) -> None:
    # The broker goes away for the worker and its relay through the proxy. Stopping the
    # shared broker itself (`rabbitmqctl stop_app`) was tried and deadlocked it: other test
    # processes were adding and deleting their virtual hosts at that moment.
    via = qsettings.model_copy(update={"rabbitmq_url": proxy.url(qsettings.rabbitmq_url)})
    wallets = [(await new_wallet(engine, 1000)).id for _ in range(10)]
    tag = uuid.uuid4().hex[:8]
    async with wiring.worker(via, engine=engine):
        await debits_via_outbox(engine, wallets, 100, tag, per_tx=10)
        await wait_for(lambda: applied_at_least(engine, tag, 100), 60, "the first 100")
        try:
            await proxy.cut("refuse")
            # Producers keep committing while the broker is away.
            await debits_via_outbox(engine, wallets, 300, tag + "b", per_tx=10)
            assert await applied(engine, tag + "b") == 0
            assert await _unsent(engine, tag + "b") == 300
        finally:
            proxy.heal()
        await wait_for(
            lambda: applied_at_least(engine, tag + "b", 300), 180, "the 300 after the outage"
        )
    done = await applied(engine, tag) + await applied(engine, tag + "b")
    wrong = await _balances_right(engine, wallets, 1000 - 40)
    faults.record(
        "broker stopped and started under load",
        injected=1,
        what="every broker connection refused; 100 debits before, 300 committed during",
        lost=max(0, 400 - done),
        twice=max(0, done - 400),
        outcome="the 300 wait in the outbox and apply once the broker is back",
    )
    assert done == 400 and wrong == 0


async def test_worker_killed_between_commit_and_ack(
    engine: AsyncEngine, qsettings: Settings, faults: Recorder
) -> None:
    wallet = await new_wallet(engine, 100)
    tag = uuid.uuid4().hex[:8]
    env = {
        **os.environ,
        "BILLING_DATABASE_URL": qsettings.database_url,
        "BILLING_RABBITMQ_URL": qsettings.rabbitmq_url,
        "BILLING_RABBITMQ_QUEUE_PREFIX": qsettings.rabbitmq_queue_prefix,
        "BILLING_RETRY_DELAYS_S": "[0.2, 0.4, 0.8]",
        "BILLING_FAULT_CRASH_AFTER_COMMIT": "wallet.debit",
        "BILLING_LOG_JSON": "false",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "commdesk_billing.cli", "worker", env=env
    )
    try:
        await debits_via_outbox(engine, [wallet.id], 1, tag)
        returncode = await asyncio.wait_for(proc.wait(), timeout=60)
        assert returncode == -signal.SIGKILL, returncode
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    # The effect committed, the ack never happened: the broker holds the message again.
    assert await applied(engine, tag) == 1
    names = Names(qsettings.rabbitmq_queue_prefix, 3)
    await wait_for(
        lambda: depth_is(qsettings, names.work("wallet.debit"), 1),
        30,
        "the unacknowledged message to be back",
    )
    before = duplicates_seen()
    async with wiring.worker(qsettings, engine=engine, relay=False):
        await wait_for(
            lambda: depth_is(qsettings, names.work("wallet.debit"), 0), 30, "the redelivery"
        )
    recognised = duplicates_seen() - before
    done = await applied(engine, tag)
    w = await in_transaction(engine, lambda c: ws.get_wallet(c, wallet.id))
    faults.record(
        "worker SIGKILLed between commit and ack",
        injected=1,
        what="the worker kills itself after its commit, before the ack; the broker redelivers",
        lost=1 - min(done, 1),
        twice=max(0, done - 1) + max(0, 99 - w.available_credits),
        outcome="the redelivery is recognised by the inbox and acknowledged",
    )
    assert recognised == 1  # redelivered, recognised, acknowledged
    assert done == 1 and w.available_credits == 99


# --- a worker cut off from the broker, reconnecting -----------------------------------------


async def _health(port: int) -> int | None:
    async with httpx.AsyncClient(timeout=2) as client:
        try:
            return (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code
        except httpx.TransportError:
            return None


async def _ready_is(port: int, status: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await _health(port) == status:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"the worker's /readyz did not answer {status} in {timeout_s} s")


async def _tried_again(proxy: FaultProxy, since: int, timeout_s: float) -> None:
    """The worker is reconnecting: it has knocked on the (broken) broker again."""
    deadline = time.monotonic() + timeout_s
    while proxy.accepted <= since:
        if time.monotonic() > deadline:
            raise AssertionError("the worker never tried to reconnect")
        await asyncio.sleep(0.1)


@pytest.fixture
async def proxy(qsettings: Settings) -> AsyncIterator[FaultProxy]:
    async with fault_proxy(qsettings.rabbitmq_url) as p:
        yield p


async def _worker_via(
    proxy: FaultProxy, qsettings: Settings, health: int
) -> asyncio.subprocess.Process:
    env = {
        **os.environ,
        "BILLING_DATABASE_URL": qsettings.database_url,
        "BILLING_RABBITMQ_URL": proxy.url(qsettings.rabbitmq_url),
        "BILLING_RABBITMQ_QUEUE_PREFIX": qsettings.rabbitmq_queue_prefix,
        "BILLING_RETRY_DELAYS_S": "[0.2, 0.4, 0.8]",
        "BILLING_RABBITMQ_CONNECT_TIMEOUT_S": "2",
        "BILLING_WORKER_METRICS_PORT": str(health),
        "BILLING_LOG_JSON": "false",
    }
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "commdesk_billing.cli",
        "worker",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


async def _stop(proc: asyncio.subprocess.Process, sig: signal.Signals) -> float:
    started = time.monotonic()
    proc.send_signal(sig)
    try:
        await asyncio.wait_for(proc.wait(), timeout=30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return time.monotonic() - started


@pytest.mark.parametrize("broken", ["wedge", "refuse"])
async def test_sigterm_while_reconnecting_stops_the_worker_in_seconds(
    engine: AsyncEngine, qsettings: Settings, proxy: FaultProxy, faults: Recorder, broken: str
) -> None:
    """Cut off mid-run, the worker reconnects against a broker that hangs (`wedge`) or
    closes at once (`refuse`); SIGTERM then ends it within seconds, exit code 0."""
    wallet = await new_wallet(engine, 100)
    tag = uuid.uuid4().hex[:8]
    health = free_port()
    proc = await _worker_via(proxy, qsettings, health)
    try:
        await _ready_is(health, 200, 60)
        await debits_via_outbox(engine, [wallet.id], 5, tag)
        await wait_for(lambda: applied_at_least(engine, tag, 5), 30, "the first 5")
        seen = proxy.accepted
        await proxy.cut(broken)  # type: ignore[arg-type]
        await _ready_is(health, 503, 30)
        await _tried_again(proxy, seen, 30)
        # Written while it reconnects: these wait in the outbox for the next worker.
        await debits_via_outbox(engine, [wallet.id], 5, tag + "b")
    finally:
        took = await _stop(proc, signal.SIGTERM)
    proxy.heal()
    async with wiring.worker(qsettings, engine=engine):
        await wait_for(lambda: applied_at_least(engine, tag + "b", 5), 60, "the 5 written later")
    done = await applied(engine, tag) + await applied(engine, tag + "b")
    w = await in_transaction(engine, lambda c: ws.get_wallet(c, wallet.id))
    broker = "hangs" if broken == "wedge" else "refuses connections"
    faults.record(
        f"SIGTERM to a worker reconnecting to a broker that {broker}",
        injected=2,
        what="connection cut mid-run, then SIGTERM while it reconnects; 5 debits before, 5 during",
        lost=max(0, 10 - done),
        twice=max(0, done - 10) + max(0, 90 - w.available_credits),
        outcome="exits 0 within 8 s; `/readyz` 503 meanwhile; the next worker applies the rest",
    )
    assert proc.returncode == 0, proc.returncode
    assert took < 8, f"SIGTERM took {took:.1f} s while reconnecting"
    assert done == 10 and w.available_credits == 90


async def test_sigkill_while_reconnecting_loses_nothing(
    engine: AsyncEngine, qsettings: Settings, proxy: FaultProxy, faults: Recorder
) -> None:
    """Cut off in the middle of a stream of debits (some applied and not yet acknowledged),
    then SIGKILLed while reconnecting; a new worker finishes the stream exactly once."""
    wallets = [(await new_wallet(engine, 1000)).id for _ in range(10)]
    tag = uuid.uuid4().hex[:8]
    health = free_port()
    proc = await _worker_via(proxy, qsettings, health)
    try:
        await _ready_is(health, 200, 60)
        await debits_via_outbox(engine, wallets, 200, tag, per_tx=10)
        await wait_for(lambda: applied_at_least(engine, tag, 40), 60, "the stream to be flowing")
        seen = proxy.accepted
        await proxy.cut("refuse")
        assert await applied(engine, tag) < 200, "cut too late: the stream was over"
        await debits_via_outbox(engine, wallets, 100, tag + "b", per_tx=10)
        await _tried_again(proxy, seen, 30)
    finally:
        await _stop(proc, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    proxy.heal()
    async with wiring.worker(qsettings, engine=engine):
        await wait_for(lambda: applied_at_least(engine, tag, 200), 120, "the first stream")
        await wait_for(lambda: applied_at_least(engine, tag + "b", 100), 120, "the later 100")
    done = await applied(engine, tag) + await applied(engine, tag + "b")
    wrong = await _balances_right(engine, wallets, 1000 - 30)
    left = await _unsent(engine, tag)
    faults.record(
        "SIGKILL to a worker reconnecting after its connection was cut mid-stream",
        injected=2,
        what="cut while 200 debits flow (some applied, not all acknowledged), 100 more "
        "written while it reconnects, then SIGKILL",
        lost=max(0, 300 - done) + left,
        twice=max(0, done - 300) + wrong,
        outcome="unacknowledged deliveries come back and the inbox applies each once",
    )
    assert done == 300 and wrong == 0 and left == 0
