"""Payments benchmark: completed credit purchases per second, and webhook ingest alone.

    .venv/bin/python bench/payments_bench.py [--rounds 3] [--purchases 600] [--webhooks 3000]
                                             [--concurrency 32] [--workers 2]

`--purchases 0` skips the purchase runs (webhook ingest and pgbench only); such a run goes to
bench/results/payments-ingest.json and its own block in docs/benchmarks.md.

Each round, on the same PostgreSQL and RabbitMQ:
  1. pgbench TPC-B (`-c 16 -j 2 -T 10`, scale 16), the yardstick;
  2. purchases end to end: `concurrency` buyers each open an order (POST /v1/payments/orders,
     our API → the sandbox's create-order over HTTP), pay it on the sandbox's hosted checkout
     (form post, UPI success), and the purchase counts once its payment is CREDITED: the
     sandbox's signed webhook verified and stored, `payment.processing` asking the sandbox
     for the order and its payments, `wallet.credit` granting two lots and posting the INR
     journal. Processes: 1 sandbox, 1 API, `workers` workers; the sandbox settles at once;
  3. webhook ingest alone: signed PAYMENT_SUCCESS webhooks for existing orders posted to the
     API with no worker running (verify, dedupe-insert the raw body, outbox row, 200), after
     a few unmeasured ones that warm the process up. Besides throughput it reports each
     request's latency (p50, p99, as the load generator sees it) and the API process's CPU
     time per webhook (user + system, from /proc/<pid>/stat, before and after): on a shared,
     loaded machine throughput says how busy the other tenants were, CPU per request says
     what one request costs, and 1000 / (CPU ms per webhook) is one core's ceiling.
Everything shares this machine's cores with the load generator. Medians over rounds, with
per-round ratios to pgbench, go to bench/results/payments.json and docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from string import Template
from typing import Any

import aio_pika
import httpx
from sqlalchemy import text

from commdesk_billing.config import Settings
from commdesk_billing.db.engine import make_engine
from commdesk_billing.db.migrate import upgrade
from commdesk_billing.gateway import signature
from commdesk_billing.queues.topology import Names, delete
from commdesk_billing.security.jwt import Role, issue_token
from commdesk_billing.stack import free_port
from pgtools import admin_sql, db_url, pgbench_init, pgbench_tps, publish_results, summarise

CLI = [sys.executable, "-m", "commdesk_billing.cli"]


def _env(url: str, prefix: str, api: str, sandbox: str) -> dict[str, str]:
    return {
        **os.environ,
        "BILLING_DATABASE_URL": url,
        "BILLING_RABBITMQ_QUEUE_PREFIX": prefix,
        "BILLING_LOG_LEVEL": "WARNING",
        "BILLING_CASHFREE_BASE_URL": f"{sandbox}/pg",
        "BILLING_CASHFREE_CHECKOUT_URL": f"{sandbox}/pg/view/checkout"
        "?payment_session_id={payment_session_id}",
        "BILLING_PUBLIC_BASE_URL": api,
        "BILLING_MAX_OPEN_ORDERS_PER_USER": "1000",
        "BILLING_CONSUMER_PREFETCH": "32",
        "BILLING_SANDBOX_SETTLE_DELAY_S": "0",
        "BILLING_SANDBOX_WEBHOOK_RETRY_SCHEDULE_S": "1,2,5",
        # The load comes from one address as a few buyers: the limiter runs (its cost is in
        # the figures) but never refuses.
        **{
            f"BILLING_RATE_LIMIT_{c}_{w}{b}": "1000000"
            for c in ("ORDERS", "MONEY", "READS")
            for w in ("USER", "IP")
            for b in ("", "_BURST")
        },
    }


async def _ready(url: str) -> None:
    async with httpx.AsyncClient(timeout=2) as client:
        for _ in range(300):
            try:
                if (await client.get(url)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} not ready")


def _start(env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([*CLI, *args], env=env)


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # After the command name: state is field 3, utime 14 and stime 15 (1-based, man 5 proc).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()


async def _count(url: str, sql: str, **params: Any) -> int:
    engine = make_engine(Settings(database_url=url), pool_size=1)
    try:
        async with engine.connect() as conn:
            return int((await conn.execute(text(sql), params)).scalar_one())
    finally:
        await engine.dispose()


async def _purchases(api: str, settings: Settings, n: int, concurrency: int, tag: str) -> None:
    tokens = [
        issue_token(settings, sub=f"pbench-{tag}-{i}", role=Role.member) for i in range(concurrency)
    ]
    limits = httpx.Limits(max_connections=concurrency * 2)
    async with httpx.AsyncClient(base_url=api, timeout=60, limits=limits) as client:
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(n):
            queue.put_nowait(i)

        async def buyer(b: int) -> None:
            auth = {"Authorization": f"Bearer {tokens[b]}"}
            while not queue.empty():
                i = queue.get_nowait()
                r = await client.post(
                    "/v1/payments/orders",
                    json={"pack_code": "pack_300", "customer_phone": "9999999999"},
                    headers={**auth, "Idempotency-Key": f"{tag}-{i}"},
                )
                if r.status_code != 201:
                    raise RuntimeError(f"order: {r.status_code} {r.text[:300]}")
                order = r.json()
                paid = await client.post(
                    order["checkout_url"].split("?", 1)[0],
                    data={
                        "payment_session_id": order["payment_session_id"],
                        "payment_method": "upi",
                        "outcome": "success",
                    },
                )
                if paid.status_code != 200:
                    raise RuntimeError(f"checkout: {paid.status_code} {paid.text[:300]}")

        await asyncio.gather(*(buyer(b) for b in range(concurrency)))


def _round_purchases(url: str, prefix: str, n: int, concurrency: int, workers: int) -> float:
    api, sandbox = f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"
    env = _env(url, prefix, api, sandbox)
    settings = Settings(database_url=url)
    procs = [
        _start(env, "sandbox", "--port", sandbox.rsplit(":", 1)[1], "--rate-limits", "off"),
        _start(env, "api", "--port", api.rsplit(":", 1)[1]),
        *(_start(env, "worker") for _ in range(workers)),
    ]
    try:
        asyncio.run(_ready(f"{sandbox}/_sandbox/health"))
        asyncio.run(_ready(f"{api}/readyz"))
        tag = uuid.uuid4().hex[:8]
        before = asyncio.run(_count(url, "SELECT count(*) FROM payments WHERE status='CREDITED'"))
        started = time.perf_counter()
        asyncio.run(_purchases(api, settings, n, concurrency, tag))
        while True:
            done = asyncio.run(_count(url, "SELECT count(*) FROM payments WHERE status='CREDITED'"))
            elapsed = time.perf_counter() - started
            if done - before >= n:
                return n / elapsed
            if elapsed > 900:
                raise RuntimeError(f"only {done - before} of {n} purchases credited in 900 s")
            time.sleep(0.1)
    finally:
        _stop(procs)


async def _seed_orders(url: str, n: int, tag: str) -> list[str]:
    """N ACTIVE payments of one buyer, written directly: the ingest run needs orders that
    exist, not the path that makes them."""
    engine = make_engine(Settings(database_url=url), pool_size=1)
    try:
        async with engine.begin() as conn:
            from commdesk_billing.modules.wallet.service import get_or_create_user_wallet

            wallet = await get_or_create_user_wallet(conn, f"whbench-{tag}")
            await conn.execute(
                text("""
                INSERT INTO payments (id, user_id, wallet_id, order_id, idempotency_key,
                    request_hash, kind, pack_code, pack_version, amount_paise, taxable_paise,
                    gst_amount_paise, cgst_paise, sgst_paise, igst_paise, gst_mode,
                    gst_rate_bp, buyer_state, seller_state, base_credits, bonus_credits,
                    status, order_expires_at)
                SELECT gen_random_uuid(), :u, :w, :tag || '_' || g, :tag || ':' || g, 'x',
                       'pack', 'pack_300', 1, 30000, 25424, 4576, 2288, 2288, 0, 'inclusive',
                       1800, '29', '29', 3000, 200, 'ACTIVE', now() + interval '1 hour'
                  FROM generate_series(1, :n) g"""),
                {"u": wallet.owner_id, "w": wallet.id, "tag": f"wh{tag}", "n": n},
            )
        return [f"wh{tag}_{i}" for i in range(1, n + 1)]
    finally:
        await engine.dispose()


async def _post_webhooks(
    api: str, secret: str, orders: list[str], concurrency: int, start: int = 0
) -> tuple[float, list[float]]:
    """Post one signed PAYMENT_SUCCESS per order; (webhooks per second, each latency in s)."""
    template = Template(
        '{"data":{"order":{"order_id":"$o","order_amount":300.00,"order_currency":"INR",'
        '"order_tags":null},"payment":{"cf_payment_id":"$p","payment_status":"SUCCESS",'
        '"payment_amount":300.00,"payment_currency":"INR","payment_group":"upi",'
        '"payment_method":{"upi":{"channel":"collect","upi_id":"testsuccess@gocash"}}}},'
        '"event_time":"2026-11-26T12:00:00+05:30","type":"PAYMENT_SUCCESS_WEBHOOK"}'
    )
    bodies = [
        template.substitute(o=o, p=10_000_000 + start + i).encode() for i, o in enumerate(orders)
    ]
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=concurrency * 2)
    async with httpx.AsyncClient(base_url=api, timeout=60, limits=limits) as client:
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        for b in bodies:
            queue.put_nowait(b)

        async def sender() -> None:
            while not queue.empty():
                body = queue.get_nowait()
                ts = str(int(time.time() * 1000))
                headers = {
                    "content-type": "application/json",
                    "x-webhook-timestamp": ts,
                    "x-webhook-signature": signature.sign(secret, ts, body),
                    "x-webhook-version": "2025-01-01",
                }
                sent = time.perf_counter()
                r = await client.post("/v1/webhooks/cashfree", content=body, headers=headers)
                latencies.append(time.perf_counter() - sent)
                if r.status_code != 200 or r.json()["status"] != "accepted":
                    raise RuntimeError(f"webhook: {r.status_code} {r.text[:300]}")

        started = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(concurrency)))
        return len(bodies) / (time.perf_counter() - started), latencies


def _percentile(values: list[float], q: int) -> float:
    """The q-th percentile (1..99)."""
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


WARM_UP = 200


def _round_webhooks(url: str, prefix: str, n: int, concurrency: int) -> dict[str, float]:
    api = f"http://127.0.0.1:{free_port()}"
    env = _env(url, prefix, api, "http://127.0.0.1:9")
    procs = [_start(env, "api", "--port", api.rsplit(":", 1)[1])]
    try:
        asyncio.run(_ready(f"{api}/readyz"))
        orders = asyncio.run(_seed_orders(url, WARM_UP + n, uuid.uuid4().hex[:8]))
        secret = Settings().cashfree_client_secret.get_secret_value()
        # Unmeasured: the first requests fill the statement caches and the connection pool.
        asyncio.run(_post_webhooks(api, secret, orders[:WARM_UP], concurrency))
        cpu_before = _cpu_s(procs[0].pid)
        per_s, latencies = asyncio.run(
            _post_webhooks(api, secret, orders[WARM_UP:], concurrency, start=WARM_UP)
        )
        cpu = _cpu_s(procs[0].pid) - cpu_before
        return {
            "webhooks_per_s": per_s,
            "webhook_api_cpu_ms": cpu * 1000 / n,
            "webhook_p50_ms": _percentile(latencies, 50) * 1000,
            "webhook_p99_ms": _percentile(latencies, 99) * 1000,
        }
    finally:
        _stop(procs)


async def _clear_outbox(url: str) -> None:
    engine = make_engine(Settings(database_url=url), pool_size=1)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("DELETE FROM outbox WHERE sent_at IS NULL"))
    finally:
        await engine.dispose()


async def _drop_queues(prefix: str) -> None:
    connection = await aio_pika.connect(Settings().rabbitmq_url)
    async with connection:
        await delete(await connection.channel(), Names(prefix, len(Settings().retry_delays_s)))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--purchases", type=int, default=600)
    parser.add_argument("--webhooks", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args()

    tag0 = uuid.uuid4().hex[:8]
    db, pgb = f"cdb_pbench_{tag0}", f"cdb_ppgbench_{tag0}"
    prefix = f"pbench{tag0}."
    asyncio.run(admin_sql(f'CREATE DATABASE "{db}"'))
    asyncio.run(admin_sql(f'CREATE DATABASE "{pgb}"'))
    rounds: list[dict[str, float]] = []
    try:
        upgrade(db_url(db))
        pgbench_init(pgb, 16)
        for i in range(args.rounds):
            tps = pgbench_tps(pgb, 16, 10)
            measured: dict[str, float] = {"pgbench_tps": tps}
            if args.purchases:
                measured["purchases_per_s"] = _round_purchases(
                    db_url(db), prefix, args.purchases, args.concurrency, args.workers
                )
            measured |= _round_webhooks(db_url(db), prefix, args.webhooks, args.concurrency)
            # The ingest run left outbox rows nobody will relay: clear them between rounds.
            asyncio.run(_clear_outbox(db_url(db)))
            rounds.append(measured)
            bought = measured.get("purchases_per_s")
            print(
                f"round {i + 1}: pgbench {tps:.0f} tps, "
                + (f"purchases {bought:.1f}/s, " if bought is not None else "")
                + f"webhook ingest {measured['webhooks_per_s']:.0f}/s, "
                f"API CPU {measured['webhook_api_cpu_ms']:.2f} ms/webhook, "
                f"p50 {measured['webhook_p50_ms']:.1f} ms, p99 {measured['webhook_p99_ms']:.1f} ms",
                flush=True,
            )
    finally:
        asyncio.run(_drop_queues(prefix))
        asyncio.run(admin_sql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
        asyncio.run(admin_sql(f'DROP DATABASE IF EXISTS "{pgb}" WITH (FORCE)'))

    med, ratio = summarise(rounds)

    command = (
        f".venv/bin/python bench/payments_bench.py --rounds {args.rounds} --purchases "
        f"{args.purchases} --webhooks {args.webhooks} --concurrency {args.concurrency} "
        f"--workers {args.workers}"
    )
    purchases = (
        f"| completed purchases end to end (order → checkout → webhook → credits), "
        f"{args.concurrency} buyers, {args.workers} workers | {med('purchases_per_s'):,.1f}/s "
        f"({med('purchases_per_s') * 60:,.0f}/min) | {ratio('purchases_per_s'):.3f} |\n"
        if args.purchases
        else ""
    )
    cpu_ms = med("webhook_api_cpu_ms")
    table = (
        "| measure | median of rounds | median ratio to pgbench (per round) |\n"
        "|---|---:|---:|\n"
        f"| pgbench TPC-B, 16 clients | {med('pgbench_tps'):,.0f} tps | 1.00 |\n"
        f"{purchases}"
        f"| webhook ingest alone (verify, store raw, outbox, 200), {args.concurrency} senders | "
        f"{med('webhooks_per_s'):,.0f}/s | {ratio('webhooks_per_s'):.3f} |\n"
        f"| webhook ingest latency seen by the senders, p50 / p99 | "
        f"{med('webhook_p50_ms'):,.1f} ms / {med('webhook_p99_ms'):,.1f} ms | |\n"
        f"| API process CPU (user + system) per ingested webhook | {cpu_ms:.2f} ms "
        f"(one core's ceiling: {1000 / cpu_ms:,.0f}/s) | |\n"
    )
    summary = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "rounds": rounds,
    }
    # An ingest-only run has its own block and results file: it must not replace the
    # purchase figures of the last full run.
    name = "payments" if args.purchases else "payments-ingest"
    publish_results(name, summary, table, docs=not args.no_docs)


if __name__ == "__main__":
    main()
