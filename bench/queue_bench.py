"""Queue benchmark: events per second from the outbox to a committed ledger effect.

    .venv/bin/python bench/queue_bench.py [--rounds 3] [--events 10000] [--workers 2]

Each round, on the same PostgreSQL and RabbitMQ:
  1. pgbench TPC-B (`-c 16 -j 2 -T 10`, scale 16), the yardstick;
  2. N `wallet.debit` events written to the outbox (500 per transaction) — producer rate;
  3. W `commdesk-billing worker --no-consumers` processes until every row is published
     and confirmed (relay alone), then W `worker --no-relay` until every debit is committed
     (consumers alone), then N more events through W full workers (end to end).
Medians over rounds, with per-round ratios to pgbench, go to bench/results/queue.json and
docs/benchmarks.md. Databases and queues are created for the run and removed after.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import aio_pika
from sqlalchemy import text

from commdesk_billing import wiring
from commdesk_billing.config import Settings
from commdesk_billing.db.engine import in_transaction, make_engine
from commdesk_billing.db.migrate import upgrade
from commdesk_billing.modules.wallet import service as ws
from commdesk_billing.modules.wallet.model import LotSource
from commdesk_billing.queues.outbox import publish
from commdesk_billing.queues.topology import Names, delete
from pgtools import admin_sql, db_url, pgbench_init, pgbench_tps, publish_results, summarise

# Grants announce through the deployment's routes, as in every process (wiring.install).
wiring.install()

WALLETS = 500


async def _setup(url: str) -> list[uuid.UUID]:
    engine = make_engine(Settings(database_url=url), pool_size=8)
    try:
        ids: list[uuid.UUID] = []
        for i in range(WALLETS):
            w = await in_transaction(
                engine, lambda c, i=i: ws.get_or_create_user_wallet(c, f"qbench-{i}")
            )
            await in_transaction(
                engine,
                lambda c, w=w: ws.grant_credits(
                    c,
                    wallet_id=w.id,
                    credits=10**9,
                    source=LotSource.promotional,
                    idempotency_key=f"qbench-fund:{w.id}",
                    reason="bench funding",
                ),
            )
            ids.append(w.id)
        return ids
    finally:
        await engine.dispose()


async def _produce(url: str, wallets: list[uuid.UUID], events: int, tag: str) -> float:
    engine = make_engine(Settings(database_url=url), pool_size=2)
    try:
        started = time.perf_counter()
        for start in range(0, events, 500):

            async def work(conn: Any, start: int = start) -> None:
                for i in range(start, min(start + 500, events)):
                    await publish(
                        conn,
                        "wallet.debit",
                        "wallet.debit.requested",
                        {
                            "wallet_id": str(wallets[i % len(wallets)]),
                            "credits": 1,
                            "reason": f"qbench {tag}",
                            "idempotency_key": f"{tag}:{i}",
                        },
                    )

            await in_transaction(engine, work)
        return events / (time.perf_counter() - started)
    finally:
        await engine.dispose()


async def _progress(url: str, tag: str) -> tuple[int, int]:
    engine = make_engine(Settings(database_url=url), pool_size=1)
    try:
        async with engine.connect() as conn:
            applied = (
                await conn.execute(
                    text("SELECT count(*) FROM wallet_transactions WHERE source = :s"),
                    {"s": f"qbench {tag}"},
                )
            ).scalar_one()
            unsent = (
                await conn.execute(text("SELECT count(*) FROM outbox WHERE sent_at IS NULL"))
            ).scalar_one()
        return int(applied), int(unsent)
    finally:
        await engine.dispose()


def _drain(url: str, prefix: str, workers: int, events: int, tag: str, mode: str) -> float:
    """Start `workers` worker processes in `mode` (relay, consume or both) and time them
    until the relay has sent everything (relay) or every debit is committed (otherwise)."""
    env = {
        **os.environ,
        "BILLING_DATABASE_URL": url,
        "BILLING_RABBITMQ_QUEUE_PREFIX": prefix,
        "BILLING_LOG_LEVEL": "WARNING",
        "BILLING_CONSUMER_PREFETCH": "32",
    }
    flags = {"relay": ["--no-consumers"], "consume": ["--no-relay"], "both": []}[mode]
    started = time.perf_counter()
    procs = [
        subprocess.Popen([sys.executable, "-m", "commdesk_billing.cli", "worker", *flags], env=env)
        for _ in range(workers)
    ]
    try:
        while True:
            applied, unsent = asyncio.run(_progress(url, tag))
            elapsed = time.perf_counter() - started
            if (unsent == 0) if mode == "relay" else (applied >= events):
                return events / elapsed
            if elapsed > 600:
                raise RuntimeError(f"{mode}: only {applied} of {events} after 600 s")
            time.sleep(0.1)
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(timeout=60)


async def _drop_queues(prefix: str) -> None:
    connection = await aio_pika.connect(Settings().rabbitmq_url)
    async with connection:
        await delete(await connection.channel(), Names(prefix, len(Settings().retry_delays_s)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args()

    tag0 = uuid.uuid4().hex[:8]
    db, pgb = f"cdb_qbench_{tag0}", f"cdb_qpgbench_{tag0}"
    prefix = f"qbench{tag0}."
    asyncio.run(admin_sql(f'CREATE DATABASE "{db}"'))
    asyncio.run(admin_sql(f'CREATE DATABASE "{pgb}"'))
    rounds: list[dict[str, float]] = []
    try:
        upgrade(db_url(db))
        pgbench_init(pgb, 16)
        wallets = asyncio.run(_setup(db_url(db)))
        for i in range(args.rounds):
            tag = f"{tag0}-{i}"
            tps = pgbench_tps(pgb, 16, 10)
            produced = asyncio.run(_produce(db_url(db), wallets, args.events, tag))
            # The two halves alone, then together on a fresh batch: shows which one binds.
            relay = _drain(db_url(db), prefix, args.workers, args.events, tag, "relay")
            consume = _drain(db_url(db), prefix, args.workers, args.events, tag, "consume")
            asyncio.run(_produce(db_url(db), wallets, args.events, tag + "e"))
            end_to_end = _drain(db_url(db), prefix, args.workers, args.events, tag + "e", "both")
            rounds.append(
                {
                    "pgbench_tps": tps,
                    "produce_per_s": produced,
                    "relay_per_s": relay,
                    "consume_per_s": consume,
                    "end_to_end_per_s": end_to_end,
                }
            )
            print(
                f"round {i + 1}: pgbench {tps:.0f} tps, outbox writes {produced:.0f}/s, "
                f"relay {relay:.0f}/s, consumers {consume:.0f}/s, end to end "
                f"{end_to_end:.0f}/s",
                flush=True,
            )
    finally:
        asyncio.run(_drop_queues(prefix))
        asyncio.run(admin_sql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
        asyncio.run(admin_sql(f'DROP DATABASE IF EXISTS "{pgb}" WITH (FORCE)'))

    med, ratio = summarise(rounds)

    command = (
        f".venv/bin/python bench/queue_bench.py --rounds {args.rounds} --events "
        f"{args.events} --workers {args.workers}"
    )
    table = (
        "| measure | median of rounds | median ratio to pgbench (per round) |\n"
        "|---|---:|---:|\n"
        f"| pgbench TPC-B, 16 clients | {med('pgbench_tps'):,.0f} tps | 1.00 |\n"
        f"| outbox writes (500 events per transaction) | {med('produce_per_s'):,.0f}/s | "
        f"{ratio('produce_per_s'):.2f} |\n"
        f"| relay alone ({args.workers} relays): outbox → RabbitMQ, confirmed, marked sent | "
        f"{med('relay_per_s'):,.0f}/s | {ratio('relay_per_s'):.2f} |\n"
        f"| consumers alone ({args.workers} workers): queue → debit committed → ack | "
        f"{med('consume_per_s'):,.0f}/s | {ratio('consume_per_s'):.2f} |\n"
        f"| end to end: outbox → relay → RabbitMQ → consumer → debit committed, "
        f"{args.workers} workers | {med('end_to_end_per_s'):,.0f}/s | "
        f"{ratio('end_to_end_per_s'):.2f} |\n"
    )
    summary = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "events": args.events,
        "workers": args.workers,
        "rounds": rounds,
    }
    publish_results(
        "queue", summary, table, docs=not args.no_docs, scope=f", {args.events} events per round"
    )


if __name__ == "__main__":
    main()
