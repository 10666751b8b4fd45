"""Wallet debits over HTTP: `POST /v1/wallets/{id}/debits` against one API process.

    .venv/bin/python bench/debits_http_bench.py [--rounds 3] [--debits 3000] [--concurrency 32]
                                                [--wallets 2000]

The ledger benchmark measures `consume_credits` called in-process; this one measures the
route a CommDesk service calls: the bearer token verified, the Idempotency-Key claimed and
stored, the debit written, the answer shaped and sent, through every middleware.

Once per run: a scratch database, migrated, with `--wallets` wallets and one hot wallet, each
funded far beyond the run (one promotional lot each, as the ledger benchmark funds them).
Each round, on the same PostgreSQL:
  1. pgbench TPC-B (`-c 16 -j 2 -T 10`, scale 16), the yardstick;
  2. one API process (`commdesk-billing api`, as the other benchmarks start it), warmed up
     with unmeasured debits; then `--debits` debits of 1 credit by `--concurrency` senders,
     each on its own kept-alive connection, with a debit-scoped service token and a fresh
     Idempotency-Key each:
     - many wallets: each debit on a wallet picked at random;
     - one hot wallet: every debit on the same wallet;
     then as many `GET /healthz` (the floor: HTTP and the middlewares, no route work);
  3. another API process with the rate limits off, and the many-wallet load again (what the
     limiter's Redis round trip adds to a request).
Per load it reports debits per second (and its ratio to that round's pgbench), each request's
latency as the sender sees it (p50, p99), the API process's CPU time (user + system, from
/proc/<pid>/stat before and after) per debit, and debits per committed transaction (statement
lines over distinct `xmin`: lines written by one transaction share it). Every answer must be
201, and the wallets' balances must have gone down by exactly the debits answered.

The senders speak HTTP/1.1 over asyncio streams with pre-encoded requests rather than through
an HTTP client library: on two cores the load generator's own CPU competes with the API
process, and a general-purpose client costs several times what it measures.
Medians over rounds go to bench/results/debits-http.json and docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime

import asyncpg
from sqlalchemy.engine import make_url

from commdesk_billing.config import Settings
from commdesk_billing.db.migrate import upgrade
from commdesk_billing.security.jwt import Role, Scope, issue_token
from commdesk_billing.stack import free_port
from pgtools import (
    db_url,
    pgbench_init,
    pgbench_tps,
    publish_results,
    scratch_databases,
    summarise,
)
from runstats import cpu_s, fund_wallets, percentile, ready, stop, unrefused_rate_limits

CLI = [sys.executable, "-m", "commdesk_billing.cli"]
FUNDING = 10**11
WARM_UP = 300
BODY = json.dumps(
    {"credits": 1, "reason": "ai_summary", "metadata": {"feature": "summary"}},
    separators=(",", ":"),
).encode()


def _env(url: str) -> dict[str, str]:
    return {
        **os.environ,
        "BILLING_DATABASE_URL": url,
        "BILLING_LOG_LEVEL": "WARNING",
        **unrefused_rate_limits(),
    }


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _ledger_state(url: str, wallets: list[uuid.UUID]) -> tuple[int, int]:
    """(available credits summed over `wallets`, their statement lines so far)."""
    conn = await asyncpg.connect(_dsn(url))
    try:
        row = await conn.fetchrow(
            "SELECT sum(available_credits)::bigint AS a, sum(statement_seq)::bigint AS s"
            "  FROM wallets WHERE id = ANY($1::uuid[])",
            wallets,
        )
        return int(row["a"]), int(row["s"])
    finally:
        await conn.close()


async def _transactions_since(url: str, wallets: list[uuid.UUID], after_seq: int) -> int:
    """Distinct writing transactions of the hot wallet's lines past `after_seq`."""
    conn = await asyncpg.connect(_dsn(url))
    try:
        return int(
            await conn.fetchval(
                "SELECT count(DISTINCT xmin::text) FROM wallet_transactions"
                " WHERE wallet_id = $1 AND seq > $2",
                wallets[0],
                after_seq,
            )
        )
    finally:
        await conn.close()


def _request(host: str, wallet: uuid.UUID, token: str, key: str) -> bytes:
    return (
        f"POST /v1/wallets/{wallet}/debits HTTP/1.1\r\n"
        f"Host: {host}\r\n"
        f"Authorization: Bearer {token}\r\n"
        f"Idempotency-Key: {key}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(BODY)}\r\n\r\n"
    ).encode() + BODY


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, bytes]:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = None
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length is None:
        raise RuntimeError(f"no content-length in {head[:200]!r}")
    return status, await reader.readexactly(length)


async def _send(
    port: int, wallets: list[uuid.UUID], token: str, n: int, concurrency: int
) -> tuple[float, list[float]]:
    """`n` debits by `concurrency` senders; (debits per second, each latency in s)."""
    host = f"127.0.0.1:{port}"
    tag = uuid.uuid4().hex[:10]
    requests = [_request(host, random.choice(wallets), token, f"{tag}-{i}") for i in range(n)]
    return await _exchange_all(port, requests, concurrency, 201)


async def _exchange_all(
    port: int, requests: list[bytes], concurrency: int, expect: int
) -> tuple[float, list[float]]:
    """Send `requests` over `concurrency` kept-alive connections; (per second, latencies)."""
    latencies: list[float] = []
    nxt = iter(requests)

    async def sender() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for req in nxt:
                sent = time.perf_counter()
                status, body = await _exchange(reader, writer, req)
                latencies.append(time.perf_counter() - sent)
                if status != expect:
                    raise RuntimeError(f"{status} {body[:300]!r}")
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(concurrency)))
    return len(requests) / (time.perf_counter() - started), latencies


def _floor(pid: int, port: int, n: int, concurrency: int) -> float:
    """API CPU ms per `GET /healthz`: what any request costs the process (HTTP, the
    middlewares) before a route does anything."""
    request = f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    asyncio.run(_exchange_all(port, [request] * WARM_UP, concurrency, 200))
    cpu_before = cpu_s(pid)
    asyncio.run(_exchange_all(port, [request] * n, concurrency, 200))
    return (cpu_s(pid) - cpu_before) * 1000 / n


def _load(
    url: str, pid: int, port: int, token: str, wallets: list[uuid.UUID], n: int, concurrency: int
) -> dict[str, float]:
    before_credits, before_seqs = asyncio.run(_ledger_state(url, wallets))
    cpu_before = cpu_s(pid)
    per_s, latencies = asyncio.run(_send(port, wallets, token, n, concurrency))
    cpu = cpu_s(pid) - cpu_before
    after_credits, after_seqs = asyncio.run(_ledger_state(url, wallets))
    if before_credits - after_credits != n or after_seqs - before_seqs != n:
        raise RuntimeError(
            f"{n} debits answered, but {before_credits - after_credits} credits and "
            f"{after_seqs - before_seqs} statement lines went"
        )
    measured = {
        "per_s": per_s,
        "api_cpu_ms": cpu * 1000 / n,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
    }
    if len(wallets) == 1:
        txns = asyncio.run(_transactions_since(url, wallets, before_seqs))
        measured["per_txn"] = n / txns
    return measured


def _api(url: str, **env: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen([*CLI, "api", "--port", str(port)], env=_env(url) | env)
    return proc, port


def _api_ready(port: int) -> None:
    # readyz also pings MongoDB, slow to give up: a longer timeout for each try.
    asyncio.run(ready(f"http://127.0.0.1:{port}/readyz", within_s=180, timeout_s=15))


def _round(
    url: str, token: str, many: list[uuid.UUID], hot: uuid.UUID, n: int, concurrency: int
) -> dict[str, float]:
    out: dict[str, float] = {}
    proc, port = _api(url)
    try:
        _api_ready(port)
        # Unmeasured: statement caches, the pool's connections, the verifier's cache.
        asyncio.run(_send(port, many, token, WARM_UP, concurrency))
        asyncio.run(_send(port, [hot], token, WARM_UP, concurrency))
        for name, wallets in (("many", many), ("hot", [hot])):
            measured = _load(url, proc.pid, port, token, wallets, n, concurrency)
            out |= {f"{name}_{k}": v for k, v in measured.items()}
        out["floor_api_cpu_ms"] = _floor(proc.pid, port, n, concurrency)
    finally:
        stop([proc])
    # The same many-wallet load with the rate limits off: what the limiter (its Redis round
    # trip) adds to each request, measured rather than guessed.
    proc, port = _api(url, BILLING_RATE_LIMIT_ENABLED="false")
    try:
        _api_ready(port)
        asyncio.run(_send(port, many, token, WARM_UP, concurrency))
        measured = _load(url, proc.pid, port, token, many, n, concurrency)
        out["many_nolimits_api_cpu_ms"] = measured["api_cpu_ms"]
    finally:
        stop([proc])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--debits", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--wallets", type=int, default=2000)
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args()

    rounds: list[dict[str, float]] = []
    with scratch_databases("cdb_dbench", "cdb_dpgbench") as (db, pgb):
        url = db_url(db)
        upgrade(url)
        pgbench_init(pgb, 16)
        tag = uuid.uuid4().hex[:8]
        subs = [f"dbench-{tag}-{i}" for i in range(args.wallets + 1)]
        wallets = asyncio.run(fund_wallets(url, subs, FUNDING, "dbench-fund"))
        hot, many = wallets[0], wallets[1:]
        token = issue_token(
            Settings(database_url=url),
            sub="dbench-service",
            role=Role.service,
            scopes=[Scope.wallets_debit.value],
        )
        for i in range(args.rounds):
            tps = pgbench_tps(pgb, 16, 10)
            measured = {"pgbench_tps": tps} | _round(
                url, token, many, hot, args.debits, args.concurrency
            )
            rounds.append(measured)
            print(
                f"round {i + 1}: pgbench {tps:.0f} tps; many wallets "
                f"{measured['many_per_s']:.0f}/s, {measured['many_api_cpu_ms']:.2f} ms API CPU"
                f"/debit, p50 {measured['many_p50_ms']:.1f} ms, p99 {measured['many_p99_ms']:.1f}"
                f" ms; hot wallet {measured['hot_per_s']:.0f}/s, "
                f"{measured['hot_api_cpu_ms']:.2f} ms API CPU/debit, p50 "
                f"{measured['hot_p50_ms']:.1f} ms, p99 {measured['hot_p99_ms']:.1f} ms, "
                f"{measured['hot_per_txn']:.1f} debits/transaction; healthz "
                f"{measured['floor_api_cpu_ms']:.2f} ms; many wallets without limits "
                f"{measured['many_nolimits_api_cpu_ms']:.2f} ms; load average "
                f"{os.getloadavg()[0]:.1f}",
                flush=True,
            )

    med, ratio = summarise(rounds)
    command = (
        f".venv/bin/python bench/debits_http_bench.py --rounds {args.rounds} --debits "
        f"{args.debits} --concurrency {args.concurrency} --wallets {args.wallets}"
    )

    def rows(name: str, what: str) -> str:
        cpu = med(f"{name}_api_cpu_ms")
        return (
            f"| {what}, {args.concurrency} senders | {med(f'{name}_per_s'):,.0f}/s "
            f"(p50 {med(f'{name}_p50_ms'):,.1f} ms, p99 {med(f'{name}_p99_ms'):,.1f} ms) "
            f"| {ratio(f'{name}_per_s'):.3f} |\n"
            f"| … API process CPU (user + system) per debit | {cpu:.2f} ms "
            f"(one core's ceiling: {1000 / cpu:,.0f}/s) | |\n"
        )

    table = (
        "| measure | median of rounds | median ratio to pgbench (per round) |\n"
        "|---|---:|---:|\n"
        f"| pgbench TPC-B, 16 clients | {med('pgbench_tps'):,.0f} tps | 1.00 |\n"
        + rows("many", f"debits over HTTP, {args.wallets:,} wallets")
        + rows("hot", "debits over HTTP, one hot wallet")
        + f"| … debits per committed transaction, hot wallet | {med('hot_per_txn'):.1f} | |\n"
        f"| API CPU per `GET /healthz` (HTTP and the middlewares alone), same process | "
        f"{med('floor_api_cpu_ms'):.2f} ms | |\n"
        f"| API CPU per debit, {args.wallets:,} wallets, rate limits off (another process) | "
        f"{med('many_nolimits_api_cpu_ms'):.2f} ms | |\n"
    )
    summary = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "load_average": os.getloadavg()[0],
        "rounds": rounds,
    }
    publish_results("debits-http", summary, table, docs=not args.no_docs)


if __name__ == "__main__":
    main()
