"""Ledger benchmark: wallet debits per second through the service layer, next to pgbench.

    .venv/bin/python bench/ledger_bench.py [--rounds 3] [--seconds 10] [--connections 16]

Each round runs, one after the other on the same PostgreSQL:
  1. pgbench TPC-B (`pgbench -c C -j 2 -T S`, scale = C) — what this machine's PostgreSQL does
     with the classic bank transaction;
  2. debits over many wallets (2 000 wallets, random pick): `consume_credits` through
     `in_transaction`, C connections split over 2 processes;
  3. debits on one hot wallet, same connections.
Medians of the rounds are reported as absolute numbers and as ratios to pgbench, printed as
a table, written to bench/results/ledger.json and into docs/benchmarks.md.
Each run creates its own databases and drops them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import random
import statistics
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from commdesk_billing.config import Settings
from commdesk_billing.db.engine import in_transaction, make_engine
from commdesk_billing.db.migrate import upgrade
from commdesk_billing.errors import InsufficientCredits
from commdesk_billing.modules.wallet import service as ws
from commdesk_billing.modules.wallet.debits import Debit
from pgtools import ROOT, db_url, pgbench_init, pgbench_tps, scratch_databases, write_docs_block
from runstats import fund_wallets

WALLETS = 2000
FUNDING = 10**9
BATCH = 20


async def _prepare(url: str) -> list[str]:
    subs = [f"bench-{i}" for i in range(WALLETS)]
    return [str(w) for w in await fund_wallets(url, subs, FUNDING, "bench-fund")]


async def _worker_main(
    url: str, wallets: list[str], tasks: int, seconds: float, start_at: float, per_tx: int
) -> tuple[int, list[float]]:
    engine = make_engine(Settings(database_url=url, db_pool_size=tasks, db_max_overflow=0))
    ids = [uuid.UUID(w) for w in wallets]
    done = 0
    latencies: list[float] = []
    try:
        async with engine.connect():  # warm one connection before the clock starts
            pass
        await asyncio.sleep(max(0.0, start_at - time.time()))
        stop = time.time() + seconds

        async def one(wid: uuid.UUID) -> int:
            try:
                await in_transaction(
                    engine,
                    lambda c: ws.consume_credits(
                        c,
                        wallet_id=wid,
                        credits=1,
                        idempotency_key=f"b:{uuid.uuid4()}",
                        reason="bench",
                    ),
                )
            except InsufficientCredits:  # funded far beyond the run
                return 0
            return 1

        async def many(batch: list[Debit]) -> int:
            out = await in_transaction(engine, lambda c: ws.consume_credits_many(c, batch))
            return sum(1 for o in out if o.error is None)

        async def loop() -> None:
            nonlocal done
            while time.time() < stop:
                t0 = time.perf_counter()
                # Await first, then add: `done += await ...` would read `done` before the
                # await and lose the other tasks' increments.
                if per_tx == 1:
                    n = await one(random.choice(ids))
                else:
                    n = await many(
                        [
                            Debit(random.choice(ids), 1, f"b:{uuid.uuid4()}", "bench")
                            for _ in range(per_tx)
                        ]
                    )
                done += n
                latencies.append(time.perf_counter() - t0)

        await asyncio.gather(*(loop() for _ in range(tasks)))
    finally:
        await engine.dispose()
    return done, latencies


def _proc(args: tuple[str, list[str], int, float, float, int]) -> tuple[int, list[float]]:
    return asyncio.run(_worker_main(*args))


def debits(
    url: str, wallets: list[str], connections: int, seconds: int, per_tx: int = 1
) -> dict[str, float]:
    """Debits per second; latencies are per transaction."""
    procs = 2
    start_at = time.time() + 2.0
    per = [connections // procs + (1 if i < connections % procs else 0) for i in range(procs)]
    with mp.get_context("spawn").Pool(procs) as pool:
        results = pool.map(
            _proc, [(url, wallets, n, float(seconds), start_at, per_tx) for n in per]
        )
    total = sum(r[0] for r in results)
    lat = sorted(x for r in results for x in r[1])
    return {
        "ops_per_s": total / seconds,
        "p50_ms": 1000 * lat[len(lat) // 2] if lat else 0.0,
        "p99_ms": 1000 * lat[int(len(lat) * 0.99)] if lat else 0.0,
    }


def _median(rounds: list[dict[str, Any]], key: str, sub: str | None = None) -> float:
    values = [r[key][sub] if sub else r[key] for r in rounds]
    return float(statistics.median(values))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--no-docs", action="store_true", help="do not touch docs/")
    args = parser.parse_args()

    with scratch_databases("cdb_bench", "cdb_pgbench") as (bench_db, pgb_db):
        upgrade(db_url(bench_db))
        pgbench_init(pgb_db, args.connections)
        wallets = asyncio.run(_prepare(db_url(bench_db)))
        hot = [wallets[0]]
        rounds: list[dict[str, Any]] = []
        for i in range(args.rounds):
            r = {
                "pgbench_tps": pgbench_tps(pgb_db, args.connections, args.seconds),
                "many": debits(db_url(bench_db), wallets, args.connections, args.seconds),
                "hot": debits(db_url(bench_db), hot, args.connections, args.seconds),
                "batched": debits(
                    db_url(bench_db), wallets, args.connections, args.seconds, per_tx=BATCH
                ),
                "hot_batched": debits(
                    db_url(bench_db), hot, args.connections, args.seconds, per_tx=BATCH
                ),
            }
            rounds.append(r)
            print(
                f"round {i + 1}: pgbench {r['pgbench_tps']:.0f} tps, many wallets "
                f"{r['many']['ops_per_s']:.0f}/s, hot wallet {r['hot']['ops_per_s']:.0f}/s, "
                f"batched {r['batched']['ops_per_s']:.0f}/s, "
                f"hot batched {r['hot_batched']['ops_per_s']:.0f}/s",
                flush=True,
            )

    pg = _median(rounds, "pgbench_tps")
    summary = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": f".venv/bin/python bench/ledger_bench.py --rounds {args.rounds} --seconds "
        f"{args.seconds} --connections {args.connections}",
        "machine": f"{os.cpu_count()} cores",
        "pgbench_tps": pg,
        "many_wallets_debits_per_s": _median(rounds, "many", "ops_per_s"),
        "many_wallets_p50_ms": _median(rounds, "many", "p50_ms"),
        "many_wallets_p99_ms": _median(rounds, "many", "p99_ms"),
        "hot_wallet_debits_per_s": _median(rounds, "hot", "ops_per_s"),
        "hot_wallet_p50_ms": _median(rounds, "hot", "p50_ms"),
        "hot_wallet_p99_ms": _median(rounds, "hot", "p99_ms"),
        "batched_debits_per_s": _median(rounds, "batched", "ops_per_s"),
        "batched_tx_p50_ms": _median(rounds, "batched", "p50_ms"),
        "hot_batched_debits_per_s": _median(rounds, "hot_batched", "ops_per_s"),
        "hot_batched_tx_p50_ms": _median(rounds, "hot_batched", "p50_ms"),
        "rounds": rounds,
    }
    # Ratios are taken within each round (pgbench and ours ran minutes apart on the same
    # machine) and then the median of those: the shared machine's drift cancels out.
    for name, key in (
        ("many", "many"),
        ("hot", "hot"),
        ("batched", "batched"),
        ("hot_batched", "hot_batched"),
    ):
        summary[f"{name}_ratio"] = statistics.median(
            r[key]["ops_per_s"] / r["pgbench_tps"] for r in rounds
        )
    table = (
        "| measure | median of rounds | median ratio to pgbench (per round) |\n|---|---:|---:|\n"
        f"| pgbench TPC-B, {args.connections} clients | {pg:,.0f} tps | 1.00 |\n"
        f"| debits, {WALLETS} wallets, {args.connections} connections | "
        f"{summary['many_wallets_debits_per_s']:,.0f}/s (p50 {summary['many_wallets_p50_ms']:.1f}"
        f" ms, p99 {summary['many_wallets_p99_ms']:.1f} ms) | {summary['many_ratio']:.2f} |\n"
        f"| debits, one hot wallet, {args.connections} connections | "
        f"{summary['hot_wallet_debits_per_s']:,.0f}/s (p50 {summary['hot_wallet_p50_ms']:.1f} ms,"
        f" p99 {summary['hot_wallet_p99_ms']:.1f} ms) | {summary['hot_ratio']:.2f} |\n"
        f"| debits, {WALLETS} wallets, {BATCH} per transaction, {args.connections} connections"
        f" | {summary['batched_debits_per_s']:,.0f}/s (p50 {summary['batched_tx_p50_ms']:.1f} ms"
        f" per transaction) | {summary['batched_ratio']:.2f} |\n"
        f"| debits, one hot wallet, {BATCH} per transaction, {args.connections} connections"
        f" | {summary['hot_batched_debits_per_s']:,.0f}/s (p50"
        f" {summary['hot_batched_tx_p50_ms']:.1f} ms per transaction)"
        f" | {summary['hot_batched_ratio']:.2f} |\n"
    )
    print()
    print(table)
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "ledger.json").write_text(json.dumps(summary, indent=2))
    if not args.no_docs:
        _write_docs(summary, table)


def _write_docs(summary: dict[str, Any], table: str) -> None:
    write_docs_block(
        "ledger-bench",
        f"Last run {summary['when']} on {summary['machine']}:\n\n"
        f"    {summary['command']}\n\n{table}",
    )


if __name__ == "__main__":
    main()
