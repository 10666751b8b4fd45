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
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
from sqlalchemy import text
from sqlalchemy.engine import make_url

from commdesk_billing.config import Settings
from commdesk_billing.db.engine import in_transaction, make_engine
from commdesk_billing.db.migrate import upgrade
from commdesk_billing.modules.wallet import service as ws
from commdesk_billing.modules.wallet.model import LotSource
from commdesk_billing.queues.outbox import publish
from commdesk_billing.queues.topology import Names, delete

ROOT = Path(__file__).resolve().parents[1]
ADMIN = os.environ.get("BILLING_TEST_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
WALLETS = 500


def _url(db: str) -> str:
    return make_url(ADMIN).set(database=db).render_as_string(hide_password=False)


def _libpq(db: str) -> list[str]:
    u = make_url(ADMIN)
    return [
        "-h",
        u.host or "127.0.0.1",
        "-p",
        str(u.port or 5432),
        "-U",
        u.username or "postgres",
        db,
    ]


async def _admin(sql: str) -> None:
    dsn = make_url(ADMIN).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def pgbench(db: str, seconds: int = 10) -> float:
    out = subprocess.run(
        ["pgbench", "-n", "-c", "16", "-j", "2", "-T", str(seconds), *_libpq(db)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    match = re.search(r"tps = ([\d.]+) \((?:without initial connection time|excluding)", out)
    if not match:
        raise RuntimeError(f"could not read pgbench output:\n{out}")
    return float(match.group(1))


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
    asyncio.run(_admin(f'CREATE DATABASE "{db}"'))
    asyncio.run(_admin(f'CREATE DATABASE "{pgb}"'))
    rounds: list[dict[str, float]] = []
    try:
        upgrade(_url(db))
        subprocess.run(
            ["pgbench", "-i", "-q", "-s", "16", *_libpq(pgb)], check=True, capture_output=True
        )
        wallets = asyncio.run(_setup(_url(db)))
        for i in range(args.rounds):
            tag = f"{tag0}-{i}"
            tps = pgbench(pgb)
            produced = asyncio.run(_produce(_url(db), wallets, args.events, tag))
            # The two halves alone, then together on a fresh batch: shows which one binds.
            relay = _drain(_url(db), prefix, args.workers, args.events, tag, "relay")
            consume = _drain(_url(db), prefix, args.workers, args.events, tag, "consume")
            asyncio.run(_produce(_url(db), wallets, args.events, tag + "e"))
            end_to_end = _drain(_url(db), prefix, args.workers, args.events, tag + "e", "both")
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
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{pgb}" WITH (FORCE)'))

    def med(key: str) -> float:
        return float(statistics.median(r[key] for r in rounds))

    def ratio(key: str) -> float:
        return float(statistics.median(r[key] / r["pgbench_tps"] for r in rounds))

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
    print()
    print(table)
    summary = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "events": args.events,
        "workers": args.workers,
        "rounds": rounds,
    }
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "queue.json").write_text(json.dumps(summary, indent=2))
    if not args.no_docs:
        doc = ROOT / "docs" / "benchmarks.md"
        text_ = doc.read_text()
        begin, end = "<!-- queue-bench:begin -->", "<!-- queue-bench:end -->"
        block = (
            f"{begin}\nLast run {summary['when']} on {os.cpu_count()} cores, "
            f"{args.events} events per round:\n\n    {command}\n\n{table}{end}"
        )
        if begin in text_:
            text_ = re.sub(f"{re.escape(begin)}.*?{re.escape(end)}", block, text_, flags=re.S)
        else:
            text_ += f"\n{block}\n"
        doc.write_text(text_)


if __name__ == "__main__":
    main()
