"""Outbox → relay → RabbitMQ → consumer → ledger, with the failures that matter."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
import pytest
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing import wiring
from commdesk_billing.config import Settings
from commdesk_billing.db.engine import in_transaction
from commdesk_billing.modules.audit.service import record
from commdesk_billing.modules.communities.mongo import community_directory
from commdesk_billing.modules.wallet import service as ws
from commdesk_billing.queues.admin import dlq_list, dlq_replay, status
from commdesk_billing.queues.envelope import Envelope
from commdesk_billing.queues.outbox import publish
from commdesk_billing.queues.scheduler import Job, Scheduler
from commdesk_billing.queues.topology import QUEUES, Names
from commdesk_billing.queues.worker import Worker
from commdesk_billing.security.jwt import Principal, Role
from tests.conftest import new_wallet
from tests.queues.conftest import (
    applied,
    applied_at_least,
    debits_via_outbox,
    depth_is,
    duplicates_seen,
    queue_depth,
    scalar,
    wait_for,
)


@pytest.mark.slow
async def test_ten_thousand_events_apply_exactly_once(
    engine: AsyncEngine, qsettings: Settings
) -> None:
    wallets = [(await new_wallet(engine, 1000)).id for _ in range(50)]
    tag = uuid.uuid4().hex[:8]
    await debits_via_outbox(engine, wallets, 10_000, tag)
    async with wiring.worker(qsettings, engine=engine):
        await wait_for(lambda: applied_at_least(engine, tag, 10_000), 300, "10 000 debits")
    assert await applied(engine, tag) == 10_000
    for wid in wallets:
        w = await in_transaction(engine, lambda c, w=wid: ws.get_wallet(c, w))
        assert w.available_credits == 1000 - 200
    assert (
        await scalar(
            engine,
            "SELECT count(*) FROM outbox WHERE sent_at IS NULL AND body LIKE :t",
            t=f"%{tag}%",
        )
        == 0
    )
    assert (
        await queue_depth(qsettings, Names(qsettings.rabbitmq_queue_prefix, 3).dlq("wallet.debit"))
        == 0
    )


async def test_transient_failures_retry_with_growing_delays(
    engine: AsyncEngine, qsettings: Settings
) -> None:
    seen: list[tuple[int, float]] = []
    marker = uuid.uuid4().hex

    async def flaky(conn: AsyncConnection, env: Envelope) -> None:
        seen.append((env.attempt, time.monotonic()))
        if env.attempt < 3:
            raise ConnectionError("downstream hiccup")
        await _mark(conn, marker)

    # Tiers far enough apart that a loaded machine cannot blur them.
    ladder = qsettings.model_copy(update={"retry_delays_s": (0.2, 1.0, 2.0)})
    async with Worker(ladder, engine=engine, handlers={"analytics.billing": flaky}):
        await in_transaction(
            engine, lambda c: publish(c, "analytics.billing", "test.flaky", {"marker": marker})
        )
        await wait_for(lambda: _effects(engine, marker, 1), 30, "the third attempt")
        await asyncio.sleep(0.5)
    assert [a for a, _ in seen] == [1, 2, 3]
    gaps = [seen[1][1] - seen[0][1], seen[2][1] - seen[1][1]]
    # Tier 0 waits 0.2 s ±20 %, tier 1 1.0 s ±20 %.
    assert 0.15 <= gaps[0] < 0.75 <= gaps[1], gaps
    assert await _count_effects(engine, marker) == 1


async def _mark(conn: AsyncConnection, marker: str) -> None:
    """A test handler's effect: one audit row, written in the consumer's transaction."""
    await record(
        conn,
        Principal("queue-test", Role.service, frozenset()),
        action="test.effect",
        target_type="marker",
        target_id=marker,
    )


async def _count_effects(engine: AsyncEngine, marker: str) -> int:
    return int(
        await scalar(engine, "SELECT count(*) FROM audit_logs WHERE target_id = :m", m=marker)
    )


async def _effects(engine: AsyncEngine, marker: str, n: int) -> bool:
    return await _count_effects(engine, marker) >= n


async def test_exhausted_attempts_land_in_the_dlq_and_replay_once_fixed(
    engine: AsyncEngine, qsettings: Settings
) -> None:
    marker = uuid.uuid4().hex
    broken = {"yes": True}
    attempts: Counter[int] = Counter()

    async def handler(conn: AsyncConnection, env: Envelope) -> None:
        attempts[env.attempt] += 1
        if broken["yes"]:
            raise RuntimeError("bug in the handler")
        await _mark(conn, marker)

    names = Names(qsettings.rabbitmq_queue_prefix, 3)
    async with Worker(qsettings, engine=engine, handlers={"fraud.detection": handler}):
        env = await in_transaction(
            engine, lambda c: publish(c, "fraud.detection", "test.broken", {"marker": marker})
        )
        await wait_for(
            lambda: depth_is(qsettings, names.dlq("fraud.detection"), 1), 30, "the dead letter"
        )
        assert sorted(attempts) == [1, 2, 3]  # max_attempts = 3
        (dead,) = await dlq_list(qsettings, "fraud.detection")
        assert (dead.message_id, dead.reason, dead.attempts) == (
            str(env.id),
            "attempts_exhausted",
            3,
        )
        assert "bug in the handler" in dead.detail
        assert await _count_effects(engine, marker) == 0
        broken["yes"] = False  # the fix ships
        assert await dlq_replay(qsettings, "fraud.detection", str(env.id)) == (1, 0)
        await wait_for(lambda: _effects(engine, marker, 1), 30, "the replayed message")
    assert await _count_effects(engine, marker) == 1
    assert await queue_depth(qsettings, names.dlq("fraud.detection")) == 0


async def test_permanent_errors_and_garbage_go_straight_to_the_dlq(
    engine: AsyncEngine, qsettings: Settings
) -> None:
    wallet = await new_wallet(engine, 5)
    names = Names(qsettings.rabbitmq_queue_prefix, 3)
    published: list[Envelope] = []
    async with wiring.worker(qsettings, engine=engine):

        async def bad(conn: AsyncConnection) -> None:
            published.clear()  # in_transaction may run this again
            for payload in (
                {"wallet_id": str(wallet.id), "credits": "lots", "reason": "x"},
                {"wallet_id": str(wallet.id), "credits": 6, "reason": "overdraw"},
            ):
                published.append(
                    await publish(conn, "wallet.debit", "wallet.debit.requested", payload)
                )

        await in_transaction(engine, bad)
        connection = await aio_pika.connect(qsettings.rabbitmq_url)
        async with connection:
            channel = await connection.channel()
            for body in (b"not json", b'{"id": "x"}'):
                await channel.default_exchange.publish(
                    aio_pika.Message(body), routing_key=names.work("wallet.debit")
                )
        await wait_for(
            lambda: depth_is(qsettings, names.dlq("wallet.debit"), 4), 30, "four dead letters"
        )
    # Each dead letter with the headers the consumer wrote (runtime.Consumers.dead_letter):
    # x-reason, x-detail, x-attempts; a body that is no envelope is named by its bytes.
    dead = {
        d.message_id if d.message_id != "-" else d.body: (d.type, d.reason, d.detail, d.attempts)
        for d in await dlq_list(qsettings, "wallet.debit")
    }
    lots, overdraw = (str(e.id) for e in published)
    assert dead == {
        lots: (
            "wallet.debit.requested",
            "permanent_error",
            "wallet.debit.requested payload is not valid: [{'type': 'int_type', "
            "'loc': ('credits',), 'msg': 'Input should be a valid integer', 'input': 'lots', "
            "'url': 'https://errors.pydantic.dev/2.14/v/int_type'}]",
            1,
        ),
        overdraw: (
            "wallet.debit.requested",
            "insufficient_credits",
            "wallet has 5 available credits, 6 requested",
            1,
        ),
        "not json": (
            "(not an envelope)",
            "invalid_message",
            "body is not JSON: Expecting value: line 1 column 1 (char 0)",
            0,
        ),
        '{"id": "x"}': (
            "(not an envelope)",
            "invalid_message",
            "not a valid envelope: id: Input should be a valid UUID, invalid character: found "
            "`x` at 0; type: Field required; occurred_at: Field required; payload: Field "
            "required",
            0,
        ),
    }
    w = await in_transaction(engine, lambda c: ws.get_wallet(c, wallet.id))
    assert w.available_credits == 5  # nothing stored was changed


@pytest.mark.slow
async def test_two_relays_and_two_workers(engine: AsyncEngine, qsettings: Settings) -> None:
    wallets = [(await new_wallet(engine, 1000)).id for _ in range(20)]
    tag = uuid.uuid4().hex[:8]
    before = duplicates_seen()
    async with wiring.worker(qsettings, engine=engine), wiring.worker(qsettings, engine=engine):
        await debits_via_outbox(engine, wallets, 2000, tag, per_tx=100)
        await wait_for(lambda: applied_at_least(engine, tag, 2000), 180, "2 000 debits")
        await asyncio.sleep(1)  # any duplicate publish would arrive by now
    assert await applied(engine, tag) == 2000
    assert duplicates_seen() == before  # no row was published twice
    assert (
        await scalar(
            engine,
            "SELECT count(*) FROM outbox WHERE sent_at IS NULL AND body LIKE :t",
            t=f"%{tag}%",
        )
        == 0
    )


async def test_delayed_jobs_wait_for_their_time(engine: AsyncEngine, qsettings: Settings) -> None:
    marker = uuid.uuid4().hex
    ran: list[float] = []

    async def job(conn: AsyncConnection, env: Envelope) -> None:
        ran.append(time.monotonic())
        await _mark(conn, marker)

    async with Worker(qsettings, engine=engine, handlers={"notifications.billing": job}):
        published = time.monotonic()
        await in_transaction(
            engine,
            lambda c: publish(
                c,
                "notifications.billing",
                "test.later",
                {},
                deliver_at=datetime.now(UTC) + timedelta(seconds=1.5),
            ),
        )
        await wait_for(lambda: _effects(engine, marker, 1), 30, "the delayed job")
    assert ran and ran[0] - published >= 1.4


async def test_queue_status_reports_depth_and_outbox(
    engine: AsyncEngine, qsettings: Settings
) -> None:
    async with Worker(qsettings, engine=engine, handlers={}, relay=False):
        pass  # declares the topology only
    await in_transaction(engine, lambda c: publish(c, "invoice.generate", "test.unsent", {}))
    report = await status(qsettings, engine)
    by_name = {q.queue: q for q in report["queues"]}
    assert set(by_name) >= {"wallet.debit", "settlements.processing"}
    assert by_name["wallet.debit"].ready == 0 and by_name["wallet.debit"].dead_letters == 0
    assert report["outbox_unsent"] >= 1 and report["outbox_oldest_unsent_s"] is not None


async def test_one_scheduler_leads_and_another_takes_over(qsettings: Settings) -> None:
    runs: Counter[str] = Counter()

    def jobs(name: str) -> list[Job]:
        async def tick() -> None:
            runs[name] += 1

        return [Job("tick", 0.05, tick)]

    a = Scheduler(qsettings, jobs("a"), tick_s=0.05, heartbeat_s=0.2)
    b = Scheduler(qsettings, jobs("b"), tick_s=0.05, heartbeat_s=0.2)
    stop_a, stop_b = asyncio.Event(), asyncio.Event()
    task_a = asyncio.create_task(a.run(stop_a))
    await wait_for(lambda: _true(a.is_leader), 10, "a to lead")
    task_b = asyncio.create_task(b.run(stop_b))
    await asyncio.sleep(0.6)
    assert a.is_leader and not b.is_leader and runs["b"] == 0 and runs["a"] > 0
    stop_a.set()
    await task_a
    await wait_for(lambda: _true(b.is_leader), 10, "b to take over")
    await wait_for(lambda: _true(runs["b"] > 0), 10, "b to run the job")
    stop_b.set()
    await task_b


async def _true(value: Any) -> bool:
    return bool(value)


async def test_a_batch_that_fails_falls_back_to_one_by_one(
    engine: AsyncEngine, qsettings: Settings
) -> None:
    marker = uuid.uuid4().hex
    batches: list[int] = []

    async def one(conn: AsyncConnection, env: Envelope) -> None:
        await _mark(conn, marker)

    async def many(conn: AsyncConnection, envs: list[Envelope]) -> list[Exception | None]:
        batches.append(len(envs))
        raise ConnectionError("the whole batch hit a transient failure")

    async def produce(conn: AsyncConnection) -> None:
        for i in range(20):
            await publish(conn, "analytics.billing", "test.batch", {"i": i})

    await in_transaction(engine, produce)
    async with Worker(
        qsettings,
        engine=engine,
        handlers={"analytics.billing": one},
        batch_handlers={"analytics.billing": many},
    ):
        await wait_for(lambda: _effects(engine, marker, 20), 30, "20 effects one by one")
        await asyncio.sleep(0.3)
    assert batches and sum(batches) >= 20
    assert await _count_effects(engine, marker) == 20


async def test_wallet_credit_messages_grant_once(engine: AsyncEngine, qsettings: Settings) -> None:
    wallet = await new_wallet(engine)
    key = f"purchase-{uuid.uuid4().hex}"
    payload = {
        "wallet_id": str(wallet.id),
        "credits": 3000,
        "source": "purchase",
        "reason": "pack",
        "idempotency_key": key,
        "source_ref": "order-1",
    }

    async def twice(conn: AsyncConnection) -> None:
        # Two different messages carrying the same operation: one grant.
        await publish(conn, "wallet.credit", "wallet.credit.requested", payload)
        await publish(conn, "wallet.credit", "wallet.credit.requested", payload)

    async with wiring.worker(qsettings, engine=engine):
        await in_transaction(engine, twice)
        await wait_for(lambda: _lines(engine, wallet.id, 1), 30, "the grant")
        await asyncio.sleep(0.5)
    w = await in_transaction(engine, lambda c: ws.get_wallet(c, wallet.id))
    assert (w.available_credits, w.lifetime_purchased_credits) == (3000, 3000)
    assert (
        await scalar(
            engine, "SELECT count(*) FROM wallet_transactions WHERE wallet_id = :w", w=wallet.id
        )
        == 1
    )
    assert (
        await scalar(engine, "SELECT paid_paise FROM credit_lots WHERE wallet_id = :w", w=wallet.id)
        == 0
    )


async def _lines(engine: AsyncEngine, wallet_id: uuid.UUID, n: int) -> bool:
    count = await scalar(
        engine, "SELECT count(*) FROM wallet_transactions WHERE wallet_id = :w", w=wallet_id
    )
    return int(count) >= n


@pytest.mark.slow
async def test_operator_commands_over_the_cli(engine: AsyncEngine, qsettings: Settings) -> None:
    async with wiring.worker(qsettings, engine=engine):
        connection = await aio_pika.connect(qsettings.rabbitmq_url)
        async with connection:
            channel = await connection.channel()
            await channel.default_exchange.publish(
                aio_pika.Message(b"garbage"),
                routing_key=Names(qsettings.rabbitmq_queue_prefix, 3).work("wallet.credit"),
            )
        await wait_for(
            lambda: depth_is(
                qsettings, Names(qsettings.rabbitmq_queue_prefix, 3).dlq("wallet.credit"), 1
            ),
            30,
            "the dead letter",
        )
    env = {
        **os.environ,
        "BILLING_DATABASE_URL": qsettings.database_url,
        "BILLING_RABBITMQ_URL": qsettings.rabbitmq_url,
        "BILLING_RABBITMQ_QUEUE_PREFIX": qsettings.rabbitmq_queue_prefix,
        "BILLING_RETRY_DELAYS_S": "[0.2, 0.4, 0.8]",
        "BILLING_LOG_JSON": "false",
    }

    async def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "commdesk_billing.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    shown = await cli("queues", "status")
    assert shown.returncode == 0, shown.stderr
    row = next(line for line in shown.stdout.splitlines() if line.startswith("wallet.credit"))
    assert row.split()[-1] == "1"  # one dead letter
    listed = await cli("dlq", "list", "wallet.credit")
    assert listed.returncode == 0, listed.stderr
    # A table: message id, type, attempts, x-reason, x-detail (logs go to stderr)
    header, rule, row = listed.stdout.splitlines()
    assert header.split() == ["message_id", "type", "attempts", "reason", "detail"]
    assert set(rule.replace(" ", "")) == {"-"}
    assert row.split(None, 5) == [
        "-",
        "(not",
        "an",
        "envelope)",
        "0",
        "invalid_message  body is not JSON: Expecting value: line 1 column 1 (char 0)",
    ]
    refused = await cli("dlq", "purge", "wallet.credit")
    assert refused.returncode == 3  # refused: needs --yes
    assert refused.stderr == "Error: purging deletes messages for good; add --yes\n"
    purged = await cli("dlq", "purge", "wallet.credit", "--yes")
    assert purged.returncode == 0 and purged.stdout == "purged 1 message(s)\n", purged.stderr
    unknown = await cli("dlq", "list", "no.such.queue")
    assert unknown.returncode == 3
    assert unknown.stderr.splitlines()[-1] == (
        f"Error: unknown queue 'no.such.queue'; one of: {', '.join(QUEUES)}"
    )


async def test_graceful_stop_finishes_messages_in_flight(
    engine: AsyncEngine, qsettings: Settings
) -> None:
    marker = uuid.uuid4().hex
    started = asyncio.Event()

    async def slow(conn: AsyncConnection, env: Envelope) -> None:
        started.set()
        await asyncio.sleep(0.7)  # still working when the stop comes
        await _mark(conn, marker)

    worker = Worker(qsettings, engine=engine, handlers={"settlements.processing": slow})
    await worker.start()
    try:
        await in_transaction(engine, lambda c: publish(c, "settlements.processing", "t.slow", {}))
        await asyncio.wait_for(started.wait(), timeout=30)
    finally:
        await worker.stop()
    assert await _count_effects(engine, marker) == 1  # finished, committed
    names = Names(qsettings.rabbitmq_queue_prefix, 3)
    assert await queue_depth(qsettings, names.work("settlements.processing")) == 0  # and acked


async def test_the_scheduler_runs_the_default_jobs(
    engine: AsyncEngine, qsettings: Settings
) -> None:

    wallet = await new_wallet(engine, 50)
    held = await in_transaction(
        engine,
        lambda c: ws.lock_credits(
            c,
            wallet_id=wallet.id,
            credits=20,
            idempotency_key=f"sch:{wallet.id}",
            reason="expiring",
            ttl_s=1,
        ),
    )
    await asyncio.sleep(1.2)
    stop = asyncio.Event()
    communities = community_directory(qsettings)
    scheduler = Scheduler(qsettings, wiring.jobs(qsettings, engine, communities), tick_s=0.1)
    task = asyncio.create_task(scheduler.run(stop))
    try:
        await wait_for(
            lambda: _hold_status(engine, held.hold.id, "expired"),  # type: ignore[union-attr]
            30,
            "the expiry job",
        )
    finally:
        stop.set()
        await task
        await communities.aclose()
    w = await in_transaction(engine, lambda c: ws.get_wallet(c, wallet.id))
    assert (w.available_credits, w.locked_credits) == (50, 0)


async def _hold_status(engine: AsyncEngine, hold_id: uuid.UUID, status: str) -> bool:
    return (
        await scalar(engine, "SELECT status FROM wallet_holds WHERE id = :h", h=hold_id) == status
    )


def test_a_scheduler_refuses_a_lease_behind_a_pooler(qsettings: Settings) -> None:
    pooled = qsettings.model_copy(update={"db_pooler": "transaction", "database_direct_url": None})
    with pytest.raises(ValueError, match="DIRECT_URL"):
        Scheduler(pooled, [])


async def test_copies_of_one_message_apply_once_even_in_one_batch(
    engine: AsyncEngine, qsettings: Settings
) -> None:
    marker = uuid.uuid4().hex

    async def one(conn: AsyncConnection, env: Envelope) -> None:
        await _mark(conn, marker)

    async def many(conn: AsyncConnection, envs: list[Envelope]) -> list[Exception | None]:
        for _ in envs:  # a handler with no idempotency of its own: only the inbox protects it
            await _mark(conn, marker)
        return [None] * len(envs)

    env = await in_transaction(engine, lambda c: publish(c, "analytics.billing", "t.copy", {}))
    names = Names(qsettings.rabbitmq_queue_prefix, 3)
    async with Worker(
        qsettings,
        engine=engine,
        handlers={"analytics.billing": one},
        batch_handlers={"analytics.billing": many},
        relay=False,
    ) as worker:
        assert worker.consumers is not None
        connection = await aio_pika.connect(qsettings.rabbitmq_url)
        async with connection:
            channel = await connection.channel()
            for _ in range(5):  # a relay that crashed after publishing re-sends the same row
                await channel.default_exchange.publish(
                    aio_pika.Message(env.encode()), routing_key=names.work("analytics.billing")
                )
        await wait_for(
            lambda: depth_is(qsettings, names.work("analytics.billing"), 0), 30, "all copies"
        )
        await asyncio.sleep(0.3)
    assert await _count_effects(engine, marker) == 1
