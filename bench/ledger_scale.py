"""Ledger at scale: build a large ledger through the batch write path, then time its reads,
the sealer and `ledger verify`, next to pgbench.

    .venv/bin/python bench/ledger_scale.py                       # quick: ~1M entries
    .venv/bin/python bench/ledger_scale.py --entries 10000000 --wallets 100000 \\
        --hot-lines 500000                                       # the full size

The generator writes only through the application's own code: wallets and their grants with
`get_or_create_user_wallet` and `grant_credits`, debits with `consume_credits_many` (the
`OperationBatch` path the queue consumer uses), over random wallets and, for a share of the
batches, on one hot wallet that so gets a long statement. Every debit of promotional credits
posts a two-leg journal (the wallet's available account and platform consumption).

Then, on the built database:
  1. `seal_pending` over everything (entries sealed per second), and the sealer's rate;
  2. wallet reads (`get_wallet`), statement pages of the hot wallet (the first page and pages
     at random deep cursors, `list_statement`) and house-account balances (the roll-up read
     `HouseBalances.read`), each N times sequentially: p50 and p99;
  3. `ledger verify --full` (every check, with a checkpoint; its chain walk on --jobs
     backends, 2 as the command's default) and, after a further batch of
     writes and a seal, `ledger verify` incremental (three runs from the same checkpoint,
     the median, then one that writes the next checkpoint): seconds and entries/s of each
     walk, the chain walk alone on one backend and on --jobs;
  4. pgbench TPC-B in the same run, on its own database, for the ratio.
The PostgreSQL backend's CPU time (user + system, /proc/<pid>/stat) is measured for each
read and verification: on a shared machine it says what the work costs where wall time says
how busy the machine was. Parallel query is off on the measuring connections, so that
backend does all of a statement's work and its CPU time is all of it.
Results go to bench/results/ledger_scale.json and docs/benchmarks.md. The databases are
created for the run and dropped after it unless --keep.
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
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from commdesk_billing import wiring
from commdesk_billing.config import Settings
from commdesk_billing.db.engine import in_transaction, make_engine
from commdesk_billing.db.migrate import upgrade
from commdesk_billing.modules.ledger.gauges import HouseBalances
from commdesk_billing.modules.ledger.seal import seal_pending
from commdesk_billing.modules.ledger.verify import CheckRun, verify_ledger
from commdesk_billing.modules.wallet import service as ws
from commdesk_billing.modules.wallet.debits import Debit, consume_credits_many
from commdesk_billing.modules.wallet.model import LotSource
from pgtools import ROOT, admin_sql, db_url, pgbench_init, pgbench_tps, write_docs_block

# Grants announce through the deployment's routes, as in every process (wiring.install).
wiring.install()

FUNDING = 10**12  # credits per wallet: never runs out
BATCH = 100  # debits per transaction
ENTRIES_PER_DEBIT = 2


async def _make_wallets(url: str, first: int, count: int) -> list[str]:
    engine = make_engine(Settings(database_url=url), pool_size=4)
    try:

        async def chunk(start: int, n: int) -> list[str]:
            async def work(c: Any) -> list[str]:
                out = []
                for i in range(start, start + n):
                    w = await ws.get_or_create_user_wallet(c, f"scale-{i}")
                    await ws.grant_credits(
                        c,
                        wallet_id=w.id,
                        credits=FUNDING,
                        source=LotSource.promotional,
                        idempotency_key=f"scale-fund:{i}",
                        reason="bench funding",
                    )
                    out.append(str(w.id))
                return out

            return await in_transaction(engine, work)

        ids: list[str] = []
        step = 100
        starts = list(range(first, first + count, step))
        for k in range(0, len(starts), 4):
            parts = await asyncio.gather(
                *(chunk(s, min(step, first + count - s)) for s in starts[k : k + 4])
            )
            ids += [w for p in parts for w in p]
        return ids
    finally:
        await engine.dispose()


def _wallets_proc(args: tuple[str, int, int]) -> list[str]:
    return asyncio.run(_make_wallets(*args))


async def _debit_batches(
    url: str, wallets: list[str], hot: str, batches: int, hot_share: float, seed: int
) -> int:
    """Write `batches` transactions of BATCH debits; a `hot_share` of them on the hot wallet."""
    rng = random.Random(seed)
    engine = make_engine(Settings(database_url=url), pool_size=4)
    ids = [uuid.UUID(w) for w in wallets]
    hot_id = uuid.UUID(hot)
    done = 0
    try:
        queue = list(range(batches))

        async def loop() -> None:
            nonlocal done
            while queue:
                queue.pop()
                if rng.random() < hot_share:
                    debits = [Debit(hot_id, 1, f"s:{uuid.uuid4()}", "bench") for _ in range(BATCH)]
                else:
                    debits = [
                        Debit(rng.choice(ids), 1, f"s:{uuid.uuid4()}", "bench")
                        for _ in range(BATCH)
                    ]
                out = await in_transaction(engine, lambda c, d=debits: consume_credits_many(c, d))
                done += sum(1 for o in out if o.error is None)

        await asyncio.gather(*(loop() for _ in range(4)))
    finally:
        await engine.dispose()
    return done


def _debits_proc(args: tuple[str, list[str], str, int, float, int]) -> int:
    return asyncio.run(_debit_batches(*args))


def generate(url: str, wallets: int, entries: int, hot_lines: int) -> dict[str, Any]:
    """Build the ledger with 2 processes; returns what was built and how fast."""
    procs = 2
    t0 = time.perf_counter()
    with mp.get_context("spawn").Pool(procs) as pool:
        per = wallets // procs
        parts = pool.map(
            _wallets_proc,
            [(url, i * per, per if i < procs - 1 else wallets - i * per) for i in range(procs)],
        )
    ids = [w for p in parts for w in p]
    wallet_s = time.perf_counter() - t0
    hot = ids[0]
    debits = max(0, (entries - 2 * wallets) // ENTRIES_PER_DEBIT)
    batches = debits // BATCH
    hot_share = min(1.0, hot_lines / max(1, debits))
    t1 = time.perf_counter()
    with mp.get_context("spawn").Pool(procs) as pool:
        done = pool.map(
            _debits_proc,
            [
                (url, ids, hot, batches // procs + (1 if i < batches % procs else 0), hot_share, i)
                for i in range(procs)
            ],
        )
    debit_s = time.perf_counter() - t1
    return {
        "wallet_ids": ids,
        "hot": hot,
        "wallets": len(ids),
        "wallet_seconds": round(wallet_s, 1),
        "debits": sum(done),
        "debit_seconds": round(debit_s, 1),
        "debits_per_s": round(sum(done) / debit_s) if debit_s else 0,
    }


async def _existing(url: str) -> dict[str, Any]:
    """What `generate` returns, read back from a database it built."""
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
    try:
        ids = [str(r["id"]) for r in await conn.fetch("SELECT id FROM wallets ORDER BY id")]
        hot = await conn.fetchval("SELECT id FROM wallets ORDER BY statement_seq DESC LIMIT 1")
    finally:
        await conn.close()
    return {
        "wallet_ids": ids,
        "hot": str(hot),
        "wallets": len(ids),
        "wallet_seconds": 0,
        "debits": 0,
        "debit_seconds": 0,
        "debits_per_s": 0,
    }


async def admin_sql_db(db: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(db_url(db).replace("postgresql+asyncpg", "postgresql"))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


class BackendCpu:
    """CPU seconds used so far by the PostgreSQL backends of an engine's connections."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.pids: set[int] = set()
        self.last: dict[int, float] = {}

        @event.listens_for(engine.sync_engine, "connect")
        def _connected(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("SET max_parallel_workers_per_gather = 0")
            cursor.execute("SELECT pg_backend_pid()")
            self.pids.add(int(cursor.fetchone()[0]))
            cursor.close()

    def seconds(self) -> float:
        for pid in self.pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # the connection closed: its last reading stands
                continue
            self.last[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return sum(self.last.values())


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))]


async def _timed(
    n: int, op: Callable[[int], Awaitable[Any]], cpu: BackendCpu | None = None
) -> dict[str, float]:
    lat: list[float] = []
    before = cpu.seconds() if cpu else 0.0
    for i in range(n):
        t = time.perf_counter()
        await op(i)
        lat.append((time.perf_counter() - t) * 1000)
    out = {"p50_ms": round(_pct(lat, 0.5), 2), "p99_ms": round(_pct(lat, 0.99), 2), "n": n}
    if cpu:
        out["backend_cpu_ms"] = round((cpu.seconds() - before) * 1000 / n, 3)
    return out


# The whole-table checks of other modules (e.g. `lots_and_lines`) outgrow the default 15 s
# statement timeout at a few hundred thousand entries: the benchmark lifts it to time them.
_LONG = 600_000


async def measure(url: str, built: dict[str, Any], samples: int, jobs: int) -> dict[str, Any]:
    engine = make_engine(
        Settings(database_url=url, db_statement_timeout_ms=_LONG), pool_size=max(2, jobs)
    )
    cpu = BackendCpu(engine)
    out: dict[str, Any] = {}
    try:
        async with engine.connect() as conn:
            from sqlalchemy import text

            out["entries"] = int(
                (await conn.execute(text("SELECT count(*) FROM ledger_entries"))).scalar_one()
            )
            hot = uuid.UUID(built["hot"])
            out["hot_lines"] = int(
                (
                    await conn.execute(
                        text("SELECT statement_seq FROM wallets WHERE id = :w"), {"w": hot}
                    )
                ).scalar_one()
            )
            await conn.rollback()

        t = time.perf_counter()
        sealed = await seal_pending(engine, block_size=5000, wait_s=60)
        seal_s = time.perf_counter() - t
        out["seal"] = {
            "entries": sealed.entries,
            "seconds": round(seal_s, 1),
            "entries_per_s": round(sealed.entries / seal_s) if seal_s else 0,
        }

        ids = [uuid.UUID(w) for w in built["wallet_ids"]]
        rng = random.Random(7)
        out["wallet_read"] = await _timed(
            samples, lambda _: in_transaction(engine, lambda c: ws.get_wallet(c, rng.choice(ids)))
        )
        out["statement_first_page"] = await _timed(
            samples,
            lambda _: in_transaction(
                engine, lambda c: ws.list_statement(c, hot, before_seq=None, limit=50)
            ),
        )
        lines = out["hot_lines"]
        out["statement_deep_page"] = await _timed(
            samples,
            lambda _: in_transaction(
                engine,
                lambda c: ws.list_statement(
                    c,
                    hot,
                    before_seq=rng.randint(max(2, lines // 10), max(2, lines // 2)),
                    limit=50,
                ),
            ),
        )
        house = HouseBalances()
        out["house_balances"] = await _timed(samples, lambda _: house.read(engine), cpu)

        runs: list[CheckRun] = []
        t, c = time.perf_counter(), cpu.seconds()
        full = await verify_ledger(
            engine, incremental=False, checkpoint=True, progress=runs.append, jobs=jobs
        )
        full_s, full_cpu = time.perf_counter() - t, cpu.seconds() - c
        slowest = sorted(runs, key=lambda r: -r.seconds)[:4]
        out["verify_full"] = {
            "ok": full.ok,
            "seconds": round(full_s, 1),
            "backend_cpu_s": round(full_cpu, 1),
            "jobs": jobs,
            "walks": full.walks,
            "slowest_checks": {r.name: round(r.seconds, 2) for r in slowest},
            "findings": [str(f) for f in full.findings[:5]],
        }

        # New writes after the checkpoint, sealed: what an incremental run then walks. Three
        # runs from the same checkpoint (the median), then one that moves it.
        added = await _debit_batches(url, built["wallet_ids"], built["hot"], 100, 0.1, 99)
        await seal_pending(engine, block_size=5000, wait_s=60)
        tries: list[tuple[float, float, list[CheckRun], Any]] = []
        for last in (False, False, False, True):
            runs = []
            t, c = time.perf_counter(), cpu.seconds()
            inc = await verify_ledger(
                engine, incremental=True, checkpoint=last, progress=runs.append
            )
            tries.append((time.perf_counter() - t, cpu.seconds() - c, runs, inc))
        inc_s, inc_cpu, runs, inc = sorted(tries[:3], key=lambda x: x[0])[1]
        slowest = sorted(runs, key=lambda r: -r.seconds)[:4]
        out["verify_incremental"] = {
            "ok": all(x[3].ok for x in tries),
            "new_debits": added,
            "touched_wallets": len(getattr(inc, "touched", None) or []),
            "seconds": round(inc_s, 2),
            "backend_cpu_s": round(inc_cpu, 2),
            "seconds_all": [round(x[0], 2) for x in tries],
            "backend_cpu_s_all": [round(x[1], 2) for x in tries],
            "walks": inc.walks,
            "slowest_checks": {r.name: round(r.seconds, 2) for r in slowest},
        }
        # Each walk's rate over its own check's time.
        took = {r.name: r.seconds for r in runs}
        for name in ("wallet_chains", "seals", "rollups"):
            n = inc.walks.get(name, 0)
            out[f"incremental:{name}"] = {
                "entries": n,
                "seconds": round(took.get(name, 0.0), 2),
                "entries_per_s": round(n / took[name]) if took.get(name) and n else 0,
            }
    finally:
        await engine.dispose()
    return out


async def verify_timings(url: str, rounds: int = 3, jobs: int = 2) -> dict[str, Any]:
    """Each walk's own rate: the walks timed alone, full (the median of `rounds`); the chain
    walk on one backend and on `jobs` (`full:wallet_chains:jobs<N>`). Backend CPU is every
    backend's, the helpers' included: entries per CPU second is the cost, whatever the
    number of backends."""
    from commdesk_billing.modules.ledger import invariants as li

    engine = make_engine(
        Settings(database_url=url, db_statement_timeout_ms=_LONG), pool_size=max(2, jobs)
    )
    cpu = BackendCpu(engine)
    out: dict[str, Any] = {}
    walks = [("", li.wallet_chains, 1), ("", li.seals, 1), ("", li.rollups, 1)]
    if jobs > 1:
        walks.insert(1, (f":jobs{jobs}", li.wallet_chains, jobs))
    try:
        for name, incremental in (("full", False),):
            for suffix, check, n_jobs in walks:
                tries = []
                for _ in range(rounds):
                    t, c = time.perf_counter(), cpu.seconds()
                    report = await verify_ledger(
                        engine, [check], incremental=incremental, jobs=n_jobs
                    )
                    tries.append((time.perf_counter() - t, cpu.seconds() - c, report))
                s, used, report = sorted(tries, key=lambda x: x[0])[len(tries) // 2]
                n = report.walks.get(check.name, 0)
                out[f"{name}:{check.name}{suffix}"] = {
                    "ok": report.ok,
                    "entries": n,
                    "seconds": round(s, 2),
                    "backend_cpu_s": round(used, 2),
                    "entries_per_s": round(n / s) if s and n else 0,
                    "entries_per_cpu_s": round(n / used) if used and n else 0,
                }
    finally:
        await engine.dispose()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--wallets", type=int, default=10_000)
    parser.add_argument("--hot-lines", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--pgbench-seconds", type=int, default=20)
    parser.add_argument("--keep", action="store_true", help="keep the built database")
    parser.add_argument(
        "--database",
        help="measure this already built database (kept) instead of building one; "
        "--generator-json gives the build's figures",
    )
    parser.add_argument("--generator-json", help="the build's figures, for the report")
    parser.add_argument("--no-docs", action="store_true", help="do not touch docs/")
    parser.add_argument(
        "--jobs",
        type=int,
        default=2,
        help="backends of the full verify's chain walk (`ledger verify --jobs`), also timed alone",
    )
    args = parser.parse_args()

    tag = uuid.uuid4().hex[:8]
    bench_db, pgb_db = args.database or f"cdb_scale_{tag}", f"cdb_pgbench_{tag}"
    if not args.database:
        asyncio.run(admin_sql(f'CREATE DATABASE "{bench_db}"'))
    asyncio.run(admin_sql(f'CREATE DATABASE "{pgb_db}"'))
    try:
        pgbench_init(pgb_db, 16)
        pg_before = pgbench_tps(pgb_db, 16, args.pgbench_seconds)
        print(f"pgbench {pg_before:.0f} tps", flush=True)
        t = time.perf_counter()
        if args.database:
            built = asyncio.run(_existing(db_url(bench_db)))
            built.update(json.loads(args.generator_json or "{}"))
        else:
            upgrade(db_url(bench_db))
            built = generate(db_url(bench_db), args.wallets, args.entries, args.hot_lines)
        print(
            f"built {built['wallets']} wallets ({built['wallet_seconds']} s), "
            f"{built['debits']} debits in {built['debit_seconds']} s "
            f"({built['debits_per_s']}/s)",
            flush=True,
        )
        build_s = time.perf_counter() - t
        asyncio.run(admin_sql(f'ALTER DATABASE "{bench_db}" SET jit = off'))
        # Statistics as autovacuum would have them after a day of such writes: right after a
        # bulk build on a busy machine it may not have analyzed yet, and some whole-table
        # checks of other modules are then planned very badly (see the notes below).
        t = time.perf_counter()
        asyncio.run(admin_sql_db(bench_db, "ANALYZE"))
        print(f"analyzed in {time.perf_counter() - t:.1f} s", flush=True)
        load_before = os.getloadavg()[0]
        measured = asyncio.run(measure(db_url(bench_db), built, args.samples, args.jobs))
        print(json.dumps({k: v for k, v in measured.items()}, indent=1), flush=True)
        walks = asyncio.run(verify_timings(db_url(bench_db), jobs=args.jobs))
        print(json.dumps(walks, indent=1), flush=True)
        load_after = os.getloadavg()[0]
        pg_after = pgbench_tps(pgb_db, 16, args.pgbench_seconds)
    finally:
        if not args.keep and not args.database:
            asyncio.run(admin_sql(f'DROP DATABASE IF EXISTS "{bench_db}" WITH (FORCE)'))
        asyncio.run(admin_sql(f'DROP DATABASE IF EXISTS "{pgb_db}" WITH (FORCE)'))

    pg = statistics.median([pg_before, pg_after])
    summary = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": f".venv/bin/python bench/ledger_scale.py --entries {args.entries} --wallets "
        f"{args.wallets} --hot-lines {args.hot_lines} --samples {args.samples}"
        f" --jobs {args.jobs}",
        "machine": f"{os.cpu_count()} cores",
        "load_average": [round(load_before, 1), round(load_after, 1)],
        "pgbench_tps": [round(pg_before), round(pg_after)],
        "build_seconds": round(build_s, 1),
        "generator": {k: v for k, v in built.items() if k not in ("wallet_ids", "hot")},
        "generator_debits_ratio_to_pgbench": round(built["debits_per_s"] / pg, 2),
        **measured,
        "walks": walks,
    }
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "ledger_scale.json").write_text(json.dumps(summary, indent=2))
    table = _table(summary)
    print(table)
    if not args.no_docs:
        write_docs_block(
            "ledger-scale",
            f"Last run {summary['when']} on {summary['machine']} (shared with other work; "
            f"load average {summary['load_average'][0]} before the measures, "
            f"{summary['load_average'][1]} after):\n\n"
            f"    {summary['command']}\n\n{table}",
        )


def _fmt(seconds: dict[str, float]) -> str:
    return ", ".join(f"{k} {v}" for k, v in seconds.items())


def _table(s: dict[str, Any]) -> str:
    def lat(key: str) -> str:
        return f"p50 {s[key]['p50_ms']} ms, p99 {s[key]['p99_ms']} ms"

    def cpu_ms(key: str) -> str:
        used = s[key].get("backend_cpu_ms")
        return "" if used is None else f"; backend CPU {used} ms per read"

    def cpu_s(one: dict[str, Any]) -> str:
        used = one.get("backend_cpu_s")
        return "" if used is None else f" (backend CPU {used} s)"

    w = s["walks"]
    touched = f"{s['verify_incremental'].get('touched_wallets', 0):,}"

    def walk(key: str) -> str:
        one = w[key]
        rate = f"{one['entries']:,} entries in {one['seconds']} s ({one['entries_per_s']:,}/s"
        if one.get("entries_per_cpu_s"):
            rate += f"; {one['entries_per_cpu_s']:,} per backend CPU second"
        return rate + ")"

    def inc(name: str) -> str:
        one = s[f"incremental:{name}"]
        return f"{one['entries']:,} entries in {one['seconds']} s ({one['entries_per_s']:,}/s)"

    g = s["generator"]
    rows = [
        (
            "database",
            f"{s['entries']:,} entries, {g['wallets']:,} wallets, hot wallet "
            f"{s['hot_lines']:,} statement lines",
        ),
        (
            "pgbench TPC-B, 16 clients (before, after)",
            f"{s['pgbench_tps'][0]:,} / {s['pgbench_tps'][1]:,} tps",
        ),
        (
            "generator: debits through `consume_credits_many`, 100 per transaction",
            f"{g['debits_per_s']:,}/s ({s['generator_debits_ratio_to_pgbench']} of pgbench tps)",
        ),
        ("wallet read (`get_wallet`)", lat("wallet_read")),
        ("statement, first page of the hot wallet", lat("statement_first_page")),
        ("statement, deep cursor page of the hot wallet", lat("statement_deep_page")),
        (
            "house-account balances (roll-up + unsealed tail), all house accounts",
            lat("house_balances") + cpu_ms("house_balances"),
        ),
        (
            "`seal_pending` over the whole build",
            f"{s['seal']['entries']:,} entries in "
            f"{s['seal']['seconds']} s ({s['seal']['entries_per_s']:,}/s)",
        ),
        (
            f"`ledger verify --full --jobs {s['verify_full'].get('jobs', 1)}`, every check",
            f"{s['verify_full']['seconds']} s{cpu_s(s['verify_full'])}, "
            f"ok={s['verify_full']['ok']}",
        ),
        ("slowest checks of the full run (s)", _fmt(s["verify_full"]["slowest_checks"])),
        (
            f"`ledger verify` incremental, after {s['verify_incremental']['new_debits']:,}"
            f" more debits ({touched} wallets touched), sealed; median of 3",
            f"{s['verify_incremental']['seconds']} s{cpu_s(s['verify_incremental'])}, "
            f"ok={s['verify_incremental']['ok']}",
        ),
        (
            "slowest checks of the incremental run (s)",
            _fmt(s["verify_incremental"]["slowest_checks"]),
        ),
        ("full walk: wallet chains, one backend (median of 3)", walk("full:wallet_chains")),
        *[
            (
                f"full walk: wallet chains, {key.rsplit('jobs', 1)[1]} backends (median of 3)",
                walk(key),
            )
            for key in w
            if key.startswith("full:wallet_chains:jobs")
        ],
        ("full walk: seals (median of 3)", walk("full:seals")),
        ("full: roll-up check", f"{w['full:rollups']['seconds']} s"),
        ("incremental walk after the checkpoint: wallet chains", inc("wallet_chains")),
        ("incremental walk: seals", inc("seals")),
        ("incremental: roll-up check", f"{s['incremental:rollups']['seconds']} s"),
    ]
    return "| measure | result |\n|---|---|\n" + "".join(f"| {a} | {b} |\n" for a, b in rows)


if __name__ == "__main__":
    main()
