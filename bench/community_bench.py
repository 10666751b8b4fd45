"""Community benchmark: spends into one hot community and over many, next to pgbench and the
platform debit.

    .venv/bin/python bench/community_bench.py [--rounds 3] [--seconds 10] [--connections 16]

Before the rounds, 2 000 member wallets are funded with bought credits (a purchase lot with
its cost basis and, in the same transaction, the `payment_captured` INR journal behind it, so
deferred revenue holds what the lots' basis says), and the accounts of 201 communities are
opened (a community's first spend would open them), then the database is vacuumed and
analyzed.

Each round runs, one after the other on the same PostgreSQL, pgbench first and then the
three loads, each round starting with the next of them (none always follows pgbench):
  1. pgbench TPC-B (`pgbench -c C -j 2 -T S`, scale = C), the yardstick;
  2. spends into one hot community by random members of 2 000: `spends.spend` inside
     `in_transaction`, one spend of 10 credits per transaction, C connections split over 2
     processes;
  3. the same spends, each into a random one of 200 communities;
  4. the platform debit on random wallets of the same 2 000 (`consume_credits`, 1 credit per
     transaction), as bench/ledger_bench.py measures it — here on bought credits, so each
     debit also recognizes its basis.
Communities are `Community` values made here: the API looks them up in CommDesk's MongoDB
through a cache before its transaction, which is not what is measured. Spends and debits
both leave out the route's own reads (the member's wallet, the idempotency-key row), as
bench/ledger_bench.py does; a member's `Wallet` is read once beforehand (`spend` locks and
re-reads the row, and uses only its ids).

During each load one more connection samples `pg_stat_activity` every 100 ms (what the
load's backends were doing), and the run reads the CPU time used by the load's processes and
their PostgreSQL backends. Medians of the rounds are reported as absolute numbers and as
per-round ratios to pgbench, printed, written to bench/results/community.json and into
docs/benchmarks.md. At the end the ledger is sealed and `ledger verify` must be clean. The
run creates its own databases and drops them, also on failure.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import random
import statistics
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing import wiring
from commdesk_billing.config import Settings
from commdesk_billing.db.engine import in_transaction, make_engine
from commdesk_billing.db.migrate import upgrade
from commdesk_billing.modules.communities import spends
from commdesk_billing.modules.communities.directory import Community, CommunityStatus
from commdesk_billing.modules.ledger import postings
from commdesk_billing.modules.ledger.accounts import open_community_accounts
from commdesk_billing.modules.ledger.journals import post_journal
from commdesk_billing.modules.ledger.seal import seal_pending
from commdesk_billing.modules.ledger.verify import VerifyReport, verify_ledger
from commdesk_billing.modules.wallet import service as ws
from commdesk_billing.modules.wallet.model import LotSource, Wallet
from pgtools import (
    db_url,
    pgbench_init,
    pgbench_tps,
    publish_results,
    scratch_databases,
    summarise,
)
from runstats import cpu_s

# Grants announce through the deployment's routes, as in every process (wiring.install).
wiring.install()

MEMBERS = 2000
COMMUNITIES = 200
FUNDING = 10**9  # credits per member, far beyond the run
PAISE_PER_CREDIT = 10  # ₹1 buys 10 credits, GST included (18 %)
SPEND = 10  # credits per spend: a 10 % fee gives every leg of the journal a non-zero amount
DEBIT = 1  # credits per platform debit, as bench/ledger_bench.py
PROCS = 2
SAMPLE_S = 0.1
HOT = "bench-hot"


def _community(community_id: str) -> Community:
    return Community(
        community_id, f"Bench {community_id}", ("bench-owner",), CommunityStatus.active
    )


async def _prepare(url: str) -> list[tuple[str, Wallet]]:
    engine = make_engine(Settings(database_url=url, db_max_overflow=0), pool_size=8)
    try:

        async def fund(conn: AsyncConnection, wallet: Wallet) -> Wallet:
            paid = FUNDING * PAISE_PER_CREDIT
            taxable = paid * 100 // 118
            result = await ws.grant_credits(
                conn,
                wallet_id=wallet.id,
                credits=FUNDING,
                source=LotSource.purchase,
                idempotency_key=f"cbench-fund:{wallet.id}",
                reason="bench funding",
                paid_paise=paid,
                taxable_paise=taxable,
            )
            # The money behind the lot, as a purchase books it (gateway clearing, deferred
            # revenue, GST), so the books agree with the lots' basis.
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
            return result.wallet

        async def make(i: int) -> tuple[str, Wallet]:
            member = f"cbench-{i}"
            w = await in_transaction(engine, lambda c: ws.get_or_create_user_wallet(c, member))
            return member, await in_transaction(engine, lambda c: fund(c, w))

        members: list[tuple[str, Wallet]] = []
        for start in range(0, MEMBERS, 100):
            members += await asyncio.gather(*(make(i) for i in range(start, start + 100)))

        async def open_all(conn: AsyncConnection) -> None:
            for cid in [HOT, *_many()]:
                await open_community_accounts(conn, cid)

        await in_transaction(engine, open_all)
        return members
    finally:
        await engine.dispose()


def _many() -> list[str]:
    return [f"bench-{i:03d}" for i in range(COMMUNITIES)]


async def _worker_main(
    url: str,
    kind: str,
    members: list[tuple[str, Wallet]],
    communities: list[str],
    tasks: int,
    seconds: float,
    start_at: float,
) -> tuple[int, list[float], float]:
    engine = make_engine(Settings(database_url=url, db_pool_size=tasks, db_max_overflow=0))
    targets = [_community(c) for c in communities]
    fee_bps = Settings(database_url=url).community_fee_bps
    done = 0
    latencies: list[float] = []
    try:
        # Every connection opened before the clock starts (pgbench's figure leaves out its
        # connection set-up too).
        conns = [await engine.connect() for _ in range(tasks)]
        for c in conns:
            await c.close()
        await asyncio.sleep(max(0.0, start_at - time.time()))
        stop = time.time() + seconds
        cpu0 = time.process_time()

        async def spend(member: tuple[str, Wallet], community: Community) -> None:
            await in_transaction(
                engine,
                lambda c: spends.spend(
                    c,
                    community=community,
                    wallet=member[1],
                    user_external_id=member[0],
                    credits=SPEND,
                    reason="bench",
                    reference=None,
                    operation_key=f"cb:{uuid.uuid4()}",
                    actor="bench",
                    default_fee_bps=fee_bps,
                ),
            )

        async def debit(member: tuple[str, Wallet]) -> None:
            await in_transaction(
                engine,
                lambda c: ws.consume_credits(
                    c,
                    wallet_id=member[1].id,
                    credits=DEBIT,
                    idempotency_key=f"b:{uuid.uuid4()}",
                    reason="bench",
                ),
            )

        async def loop() -> None:
            nonlocal done
            while time.time() < stop:
                t0 = time.perf_counter()
                if kind == "debit":
                    await debit(random.choice(members))
                else:
                    await spend(random.choice(members), random.choice(targets))
                done += 1
                latencies.append(time.perf_counter() - t0)

        await asyncio.gather(*(loop() for _ in range(tasks)))
        cpu = time.process_time() - cpu0
    finally:
        await engine.dispose()
    return done, latencies, cpu


def _proc(
    args: tuple[str, str, list[tuple[str, Wallet]], list[str], int, float, float],
) -> tuple[int, list[float], float]:
    return asyncio.run(_worker_main(*args))


def _backend_cpu_s(pids: list[int]) -> float | None:
    """User + system CPU seconds of these PostgreSQL backends (None off this machine)."""
    try:
        return sum(cpu_s(pid) for pid in pids)
    except (OSError, IndexError, ValueError):
        return None


def _machine_ticks() -> tuple[int, int]:
    """(busy, all) jiffies of every core since boot ((0, 0) where /proc has no such file)."""
    try:
        line = Path("/proc/stat").read_text().split("\n", 1)[0]
    except OSError:
        return 0, 0
    values = [int(v) for v in line.split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    return sum(values) - idle, sum(values)


def _dsn(db: str) -> str:
    return make_url(db_url(db)).set(drivername="postgresql").render_as_string(hide_password=False)


_ACTIVITY = """
    SELECT pid, state, wait_event_type, wait_event FROM pg_stat_activity
     WHERE datname = $1 AND backend_type = 'client backend' AND pid <> pg_backend_pid()"""


def _what(state: str | None, wtype: str | None, wevent: str | None) -> str:
    if state == "active":
        return f"active, waiting on {wtype}:{wevent}" if wtype else "active, on CPU"
    if state == "idle in transaction":
        return "in a transaction, waiting for Python"
    return "between transactions"


async def _sample(db: str, connections: int, start_at: float, seconds: float) -> dict[str, Any]:
    """What the load's backends do, sampled every SAMPLE_S, and the CPU they and the whole
    machine used over the timed window (from when all the load's connections are open)."""
    conn = await asyncpg.connect(_dsn(db))
    try:
        await asyncio.sleep(max(0.0, start_at - time.time()))
        pids: list[int] = []
        while len(pids) < connections and time.time() < start_at + seconds / 2:
            pids = [r["pid"] for r in await conn.fetch(_ACTIVITY, db)]
            await asyncio.sleep(0.05)
        cpu0, busy0 = _backend_cpu_s(pids), _machine_ticks()
        t0 = time.time()
        seen: Counter[str] = Counter()
        while time.time() < start_at + seconds - 0.2:
            for r in await conn.fetch(_ACTIVITY, db):
                seen[_what(r["state"], r["wait_event_type"], r["wait_event"])] += 1
            await asyncio.sleep(SAMPLE_S)
        cpu1, busy1, elapsed = _backend_cpu_s(pids), _machine_ticks(), time.time() - t0
    finally:
        await conn.close()
    n = sum(seen.values()) or 1
    return {
        "activity": {k: v / n for k, v in seen.most_common()},
        "backend_cpu_s_per_s": (cpu1 - cpu0) / elapsed
        if cpu0 is not None and cpu1 is not None and len(pids) == connections
        else None,
        "machine_busy": (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1]),
    }


def load(
    db: str,
    kind: str,
    members: list[tuple[str, Wallet]],
    communities: list[str],
    connections: int,
    seconds: int,
) -> dict[str, Any]:
    """Operations per second; latencies are per transaction, CPU is per operation."""
    start_at = time.time() + 3.0
    per = [connections // PROCS + (1 if i < connections % PROCS else 0) for i in range(PROCS)]
    args = [(db_url(db), kind, members, communities, n, float(seconds), start_at) for n in per]
    with mp.get_context("spawn").Pool(PROCS) as pool:
        pending = pool.map_async(_proc, args)
        sampled = asyncio.run(_sample(db, connections, start_at, seconds))
        results = pending.get()
    total = sum(r[0] for r in results)
    lat = sorted(x for r in results for x in r[1])
    rate = total / seconds
    backend = sampled["backend_cpu_s_per_s"]
    return {
        "ops_per_s": rate,
        "p50_ms": 1000 * lat[len(lat) // 2] if lat else 0.0,
        "p99_ms": 1000 * lat[int(len(lat) * 0.99)] if lat else 0.0,
        # Each process's CPU over its own operations, and both together.
        "python_cpu_ms_per_op_by_process": [1000 * r[2] / max(1, r[0]) for r in results],
        "python_cpu_ms_per_op": 1000 * sum(r[2] for r in results) / max(1, total),
        "pg_cpu_ms_per_op": 1000 * backend / rate if backend is not None and rate else None,
        # Cores the load's processes and their backends kept busy (of the machine's).
        "load_cores": sum(r[2] for r in results) / seconds + (backend or 0.0),
        "machine_busy": sampled["machine_busy"],
        "activity": sampled["activity"],
    }


def _run(
    name: str, db: str, members: list[tuple[str, Wallet]], connections: int, seconds: int
) -> dict[str, Any]:
    if name == "debits":
        return load(db, "debit", members, [], connections, seconds)
    return load(db, "spend", members, [HOT] if name == "hot" else _many(), connections, seconds)


async def _sql(db: str, statement: str) -> None:
    conn = await asyncpg.connect(_dsn(db))
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def _verify(url: str) -> VerifyReport:
    engine = make_engine(Settings(database_url=url), direct=True, pool_size=2)
    try:
        await seal_pending(engine)
        return await verify_ledger(engine)
    finally:
        await engine.dispose()


LOADS = ("hot", "many", "debits")


def _flat(name: str, r: dict[str, Any]) -> dict[str, float]:
    keys = ("ops_per_s", "p50_ms", "p99_ms", "python_cpu_ms_per_op", "load_cores", "machine_busy")
    out = {f"{name}_{k}": float(r[k]) for k in keys}
    for j, ms in enumerate(r["python_cpu_ms_per_op_by_process"]):
        out[f"{name}_python_cpu_ms_per_op_p{j + 1}"] = float(ms)
    if r["pg_cpu_ms_per_op"] is not None:
        out[f"{name}_pg_cpu_ms_per_op"] = float(r["pg_cpu_ms_per_op"])
    return out


def _share(x: float) -> str:
    return "<1 %" if 0 < x < 0.005 else f"{100 * x:.0f} %"


def _activity_table(loads: list[dict[str, dict[str, Any]]], labels: dict[str, str]) -> str:
    """Median share of sampled backends in each state, per load, the most seen first."""
    lines = [
        "| what the load's backends were doing (pg_stat_activity, every 100 ms) | "
        + " | ".join(labels[k] for k in LOADS)
        + " |",
        "|---|" + "---:|" * len(LOADS),
    ]
    states: Counter[str] = Counter()
    for r in loads:
        for k in LOADS:
            states.update(r[k]["activity"])
    for state, _ in states.most_common(8):
        cells = [
            _share(statistics.median(r[k]["activity"].get(state, 0.0) for r in loads))
            for k in LOADS
        ]
        lines.append(f"| {state} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--no-docs", action="store_true", help="do not touch docs/")
    args = parser.parse_args()

    rounds: list[dict[str, float]] = []
    detail: list[dict[str, dict[str, Any]]] = []
    orders: list[list[str]] = []
    with scratch_databases("cdb_cbench", "cdb_cpgbench") as (bench_db, pgb_db):
        upgrade(db_url(bench_db))
        pgbench_init(pgb_db, args.connections)
        members = asyncio.run(_prepare(db_url(bench_db)))
        # Statistics and visibility for the tables just filled, as autovacuum would give
        # them soon: otherwise the first load pays for it.
        asyncio.run(_sql(bench_db, "VACUUM (ANALYZE)"))
        c, s = args.connections, args.seconds
        for i in range(args.rounds):
            tps = pgbench_tps(pgb_db, c, s)
            # Each round starts with another load: none always runs right after pgbench.
            order = LOADS[i % len(LOADS) :] + LOADS[: i % len(LOADS)]
            r = {name: _run(name, bench_db, members, c, s) for name in order}
            detail.append(r)
            orders.append(list(order))
            rounds.append(
                {"pgbench_tps": tps, **{k: v for n in LOADS for k, v in _flat(n, r[n]).items()}}
            )
            print(
                f"round {i + 1}: pgbench {tps:.0f} tps, hot community "
                f"{r['hot']['ops_per_s']:.0f}/s, {COMMUNITIES} communities "
                f"{r['many']['ops_per_s']:.0f}/s, platform debits {r['debits']['ops_per_s']:.0f}/s"
                f" (in the order {', '.join(order)})",
                flush=True,
            )
        report = asyncio.run(_verify(db_url(bench_db)))
        stats = ", ".join(f"{k}={v}" for k, v in report.stats.items())
        for finding in report.findings:
            print(f"FAIL {finding}")
        print(
            ("ledger OK: " if report.ok else f"ledger NOT OK: {len(report.findings)} finding(s); ")
            + stats,
            flush=True,
        )
        if not report.ok:
            raise SystemExit("ledger verify found problems after the run")

    med, ratio = summarise(rounds)
    labels = {
        "hot": f"spends, one hot community, {MEMBERS} members",
        "many": f"spends, {COMMUNITIES} communities, {MEMBERS} members",
        "debits": f"platform debits, {MEMBERS} wallets",
    }

    def row(name: str) -> str:
        each = " / ".join(
            f"{med(f'{name}_python_cpu_ms_per_op_p{j + 1}'):.2f}" for j in range(PROCS)
        )
        cpu = f"Python {each} ms (process {' / '.join(str(j + 1) for j in range(PROCS))})"
        if all(f"{name}_pg_cpu_ms_per_op" in r for r in rounds):
            cpu += f", PostgreSQL {med(f'{name}_pg_cpu_ms_per_op'):.2f} ms"
        return (
            f"| {labels[name]}, {c} connections | {med(f'{name}_ops_per_s'):,.0f}/s (p50 "
            f"{med(f'{name}_p50_ms'):.1f} ms, p99 {med(f'{name}_p99_ms'):.1f} ms; CPU per "
            f"operation {cpu}; the load used {med(f'{name}_load_cores'):.1f} cores, the "
            f"machine was {100 * med(f'{name}_machine_busy'):.0f} % busy) | "
            f"{ratio(f'{name}_ops_per_s'):.2f} |\n"
        )

    hot_vs = {
        "many": statistics.median(r["hot_ops_per_s"] / r["many_ops_per_s"] for r in rounds),
        "debits": statistics.median(r["hot_ops_per_s"] / r["debits_ops_per_s"] for r in rounds),
    }
    table = (
        "| measure | median of rounds | median ratio to pgbench (per round) |\n"
        "|---|---:|---:|\n"
        f"| pgbench TPC-B, {c} clients | {med('pgbench_tps'):,.0f} tps | 1.00 |\n"
        + "".join(row(n) for n in LOADS)
        + "\n"
        f"The hot community's rate is {hot_vs['many']:.2f} times that of {COMMUNITIES} "
        f"communities and {hot_vs['debits']:.2f} times that of platform debits (medians of "
        "per-round ratios).\n\n"
        + _activity_table(detail, {"hot": "hot", "many": "200 communities", "debits": "debits"})
        + f"\n`ledger verify` after the run (entries sealed first): "
        f"{'OK' if report.ok else 'NOT OK'}, {stats}.\n"
    )
    summary = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": f".venv/bin/python bench/community_bench.py --rounds {args.rounds} "
        f"--seconds {s} --connections {c}",
        "machine": f"{os.cpu_count()} cores",
        "hot_vs_many": hot_vs["many"],
        "hot_vs_debits": hot_vs["debits"],
        "ledger_verify": {"ok": report.ok, "stats": report.stats},
        "rounds": rounds,
        "order_of_loads": orders,
        "detail": detail,
    }
    publish_results("community", summary, table, docs=not args.no_docs)


if __name__ == "__main__":
    main()
