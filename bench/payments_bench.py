"""Payments benchmark: completed credit purchases (their CPU by process, statements,
messages and latency), and webhook ingest alone.

    .venv/bin/python bench/payments_bench.py [--rounds 3] [--purchases 600] [--webhooks 3000]
                                             [--concurrency 32] [--workers 2] [--broker own]

Each round, on the same PostgreSQL:
  1. pgbench TPC-B (`-c 16 -j 2 -T 10`, scale 16), the yardstick;
  2. purchases end to end (`--purchases N`; 0 skips them): buyers open an order (POST
     /v1/payments/orders, our API → the sandbox's create-order over HTTP), pay it on the
     sandbox's hosted checkout (form post, UPI success), and the purchase counts once its
     payment is CREDITED: the sandbox's signed webhook verified and stored,
     `payment.processing` asking the sandbox for the order and its payments, `wallet.credit`
     granting two lots and posting the INR journal, then the follow-up work that announces
     (tax invoice and its PDF, analytics, fraud scoring, notifications, events out).
     Processes: 1 sandbox, 1 API, `workers` workers and, with `--broker own` (the default,
     as root), a RabbitMQ node of the benchmark's own, so its CPU is the run's alone.
     After unmeasured warm-up purchases and a quiet spell (what idle processes cost a
     second), two measured windows: N purchases by `concurrency` buyers as fast as they are
     served (full speed), then N started at 80 % of that pace (a rate-limited driver). Each
     window runs until the follow-up work has drained and reports, per purchase: CPU by
     process (user + system from /proc: the API, each worker, the sandbox, the database's
     backends sampled every 0.2 s, the broker, and the load generator's own thread),
     the statements, transactions and round trips the API and the workers sent (they count
     them when BILLING_DB_STATEMENT_STATS_DIR is set: db/statement_stats.py), new database
     connections, the garbage collector's CPU, the outbox messages by queue and type, and
     each purchase's time from its success at the sandbox (the checkout's answer) to
     `payments.credited_at`, p50 and p99;
  3. webhook ingest alone (`--webhooks N`; 0 skips it): signed PAYMENT_SUCCESS webhooks for
     existing orders posted to the API with no worker running (verify, dedupe-insert the raw
     body, outbox row, 200), after a few unmeasured ones that warm the process up: throughput,
     each request's latency as the load generator sees it, and the API process's CPU time
     per webhook (1000 / that is one core's ceiling).
Everything shares this machine's cores with the load generator. Medians over rounds, with
per-round ratios to pgbench, go to bench/results/payments-purchases.json and
payments-ingest.json, and to their blocks in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from string import Template
from typing import Any

import aio_pika
import asyncpg
import httpx
from sqlalchemy import text

import rabbit_cluster as rc
from commdesk_billing.config import Settings
from commdesk_billing.db.engine import make_engine
from commdesk_billing.db.migrate import upgrade
from commdesk_billing.gateway import signature
from commdesk_billing.queues.topology import QUEUES, Names, delete
from commdesk_billing.security.jwt import Role, issue_token
from commdesk_billing.stack import free_port
from pgtools import admin_sql, db_url, pgbench_init, pgbench_tps, publish_results, summarise
from runstats import (
    TICK,
    Backends,
    cpu_s,
    dsn,
    percentile,
    ready,
    stop,
    tree_ticks,
    unrefused_rate_limits,
)

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
        # Cashfree's own schedule is longer; a loaded machine's API may answer a webhook late
        # (there is no scheduler here to heal a payment whose webhooks all failed).
        "BILLING_SANDBOX_WEBHOOK_RETRY_SCHEDULE_S": "1,2,5,10,20,40,60",
        # Fraud scoring runs (its cost is in the figures) but holds nothing: its velocity
        # windows in Redis count every round's orders from 127.0.0.1 as one buyer's.
        "BILLING_FRAUD_REVIEW_SCORE": "101",
        "BILLING_FRAUD_BLOCK_SCORE": "101",
        **unrefused_rate_limits(),
    }


def _start(env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([*CLI, *args], env=env)


# --- purchases end to end ------------------------------------------------------------------

# Unmeasured purchases first: they fill the statement caches and the connection pools.
WARM_UP_PURCHASES = 40
# A quiet spell before the windows: what the idle processes (relays polling the outbox,
# consumers waiting) cost per second, so a window's figures can say how much of them is that.
IDLE_S = 5.0
# The latency window's pace, as a share of the throughput the same round's full-speed
# window reached.
LATENCY_LOAD = 0.8


@dataclass
class Stack:
    """One round's processes, and the benchmark's own connections (left out of the figures:
    its backend by pid, its broker channel only checks the queues while draining)."""

    db: str
    prefix: str
    api_url: str
    broker_url: str
    broker_pid: int | None
    stats_dir: Path
    procs: dict[str, subprocess.Popen[bytes]]
    conn: asyncpg.Connection[Any]
    backend_pid: int
    settings: Settings


@dataclass
class Snapshot:
    at: float
    ticks: dict[str, int]
    statements: dict[str, dict[str, Any]]
    outbox_id: int


async def _statement_counts(stack: Stack) -> dict[str, dict[str, Any]]:
    """Each app process writes its counts on SIGUSR1 (db/statement_stats.py): signal, then
    wait for the file to be rewritten."""
    out: dict[str, dict[str, Any]] = {}
    for name, proc in stack.procs.items():
        if name == "sandbox":
            continue  # no database
        path = stack.stats_dir / f"{proc.pid}.json"
        before = path.stat().st_mtime_ns if path.exists() else 0
        os.kill(proc.pid, signal.SIGUSR1)
        for _ in range(500):
            if path.exists() and path.stat().st_mtime_ns != before:
                break
            await asyncio.sleep(0.01)
        else:
            raise RuntimeError(f"{name} wrote no statement counts")
        out[name] = json.loads(path.read_text())
    return out


async def _snapshot(stack: Stack) -> Snapshot:
    roots = {name: [p.pid] for name, p in stack.procs.items()}
    if stack.broker_pid is not None:
        roots["broker"] = [stack.broker_pid]
    ticks = {name: tree_ticks(pids) for name, pids in roots.items()}
    statements = await _statement_counts(stack)
    outbox_id = await stack.conn.fetchval("SELECT coalesce(max(id), 0) FROM outbox")
    return Snapshot(time.perf_counter(), ticks, statements, int(outbox_id))


def _diff(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


def _statement_diff(after: Snapshot, before: Snapshot, part: str) -> dict[str, int]:
    """What every app process sent between two snapshots, summed (`part`: kinds or texts)."""
    total: dict[str, int] = {}
    for name, counts in after.statements.items():
        for k, v in _diff(counts[part], before.statements[name][part]).items():
            total[k] = total.get(k, 0) + v
    return total


async def _send(client: httpx.AsyncClient, method: str, url: str, **kw: Any) -> httpx.Response:
    """A request as a client would make it: sent again (the same request, so the same
    Idempotency-Key) after a dropped connection or a 503 (the API's pool or the database
    busy on a loaded machine), after a pause."""
    for attempt in range(10):
        try:
            r = await client.request(method, url, **kw)
        except httpx.TransportError:
            if attempt == 9:
                raise
        else:
            if r.status_code != 503 or attempt == 9:
                return r
        await asyncio.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


SendRequest = Callable[..., Awaitable[httpx.Response]]


async def _order_and_pay(send: SendRequest, headers: dict[str, str]) -> str:
    """Order a pack with `headers` (a bearer token and an Idempotency-Key), then pay it on
    the hosted checkout, each request through `send(method, url, **kw)`: the order's id."""
    r = await send(
        "POST",
        "/v1/payments/orders",
        json={"pack_code": "pack_300", "customer_phone": "9999999999"},
        headers=headers,
    )
    if r.status_code != 201:
        raise RuntimeError(f"order: {r.status_code} {r.text[:300]}")
    order = r.json()
    paid = await send(
        "POST",
        order["checkout_url"].split("?", 1)[0],
        data={
            "payment_session_id": order["payment_session_id"],
            "payment_method": "upi",
            "outcome": "success",
        },
    )
    if paid.status_code != 200:
        raise RuntimeError(f"checkout: {paid.status_code} {paid.text[:300]}")
    return str(order["order_id"])


async def _buy_one(
    client: httpx.AsyncClient, token: str, key: str, paid_at: dict[str, float]
) -> None:
    """Order, then pay it on the hosted checkout; `paid_at[order_id]`: when the sandbox
    answered the checkout with success (its payment succeeded just before)."""
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": key}
    order_id = await _order_and_pay(functools.partial(_send, client), headers)
    paid_at[order_id] = time.time()


async def _buy(
    api: str,
    settings: Settings,
    n: int,
    concurrency: int,
    tag: str,
    paid_at: dict[str, float],
    rate: float | None = None,
) -> None:
    """`concurrency` buyers buying `n` packs as fast as they are served (`rate` None), or
    purchases started at `rate` a second, evenly spaced, whatever the answers' pace."""
    tokens = [
        issue_token(settings, sub=f"pbench-{tag}-{i}", role=Role.member) for i in range(concurrency)
    ]
    limits = httpx.Limits(max_connections=max(64, concurrency * 2))
    async with httpx.AsyncClient(base_url=api, timeout=60, limits=limits) as client:
        if rate is None:
            queue: asyncio.Queue[int] = asyncio.Queue()
            for i in range(n):
                queue.put_nowait(i)

            async def buyer(b: int) -> None:
                while not queue.empty():
                    i = queue.get_nowait()
                    await _buy_one(client, tokens[b], f"{tag}-{i}", paid_at)

            await asyncio.gather(*(buyer(b) for b in range(concurrency)))
            return
        started = time.perf_counter()
        tasks: list[asyncio.Task[None]] = []
        for i in range(n):
            delay = started + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(
                asyncio.create_task(
                    _buy_one(client, tokens[i % concurrency], f"{tag}-{i}", paid_at)
                )
            )
        await asyncio.gather(*tasks)


async def _purchases(api: str, settings: Settings, n: int, concurrency: int, tag: str) -> None:
    """`n` purchases by `concurrency` buyers as fast as they are served (refunds_bench)."""
    await _buy(api, settings, n, concurrency, tag, {})


async def _count(url: str, sql: str, **params: Any) -> int:
    engine = make_engine(Settings(database_url=url), pool_size=1)
    try:
        async with engine.connect() as conn:
            return int((await conn.execute(text(sql), params)).scalar_one())
    finally:
        await engine.dispose()


def _driven(coro: Callable[[], Coroutine[Any, Any, None]]) -> float:
    """Run the load generator on its own thread and event loop: its CPU seconds."""
    started = time.thread_time()
    asyncio.run(coro())
    return time.thread_time() - started


async def _credited(stack: Stack, since: datetime) -> int:
    return int(
        await stack.conn.fetchval(
            "SELECT count(*) FROM payments WHERE status = 'CREDITED' AND created_at >= $1", since
        )
    )


async def _until_drained(stack: Stack, names: Names, channel: aio_pika.abc.AbstractChannel) -> int:
    """Until the outbox and the queues are empty twice, a second apart (a message being
    handled is not counted as waiting): the dead letters."""
    quiet = dead = 0
    deadline = time.perf_counter() + 300
    while quiet < 2:
        if time.perf_counter() > deadline:
            raise RuntimeError("the follow-up work did not drain in 300 s")
        waiting = int(
            await stack.conn.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
        )
        dead = 0
        for q in QUEUES:
            for name, dlq in ((names.work(q), False), (names.dlq(q), True)):
                declared = await channel.declare_queue(name, passive=True)
                count = declared.declaration_result.message_count or 0
                dead, waiting = (dead + count, waiting) if dlq else (dead, waiting + count)
        for name in names.tiers_all():
            declared = await channel.declare_queue(name, passive=True)
            waiting += declared.declaration_result.message_count or 0
        quiet = quiet + 1 if waiting == 0 else 0
        if quiet < 2:
            await asyncio.sleep(1)
    return dead


async def _window(
    stack: Stack,
    names: Names,
    channel: aio_pika.abc.AbstractChannel,
    n: int,
    concurrency: int,
    rate: float | None,
    idle: dict[str, float] | None,
) -> dict[str, Any]:
    """Buy `n` and measure from the first order until the follow-up work drained: CPU by
    process, statements, outbox messages, and each purchase's time from its success at the
    sandbox to CREDITED."""
    tag = uuid.uuid4().hex[:8]
    paid_at: dict[str, float] = {}
    since = datetime.now(UTC)
    before = await _snapshot(stack)
    backends = Backends(stack.db, exclude={stack.backend_pid})
    backends.start()
    driving = asyncio.create_task(
        asyncio.to_thread(
            _driven,
            lambda: _buy(stack.api_url, stack.settings, n, concurrency, tag, paid_at, rate),
        )
    )
    while (done := await _credited(stack, since)) < n or not driving.done():
        if driving.done() and driving.exception() is not None:
            raise RuntimeError("the load generator failed") from driving.exception()
        if time.perf_counter() - before.at > 900:
            raise RuntimeError(f"only {done} of {n} purchases credited in 900 s")
        await asyncio.sleep(0.1)
    credited_s = time.perf_counter() - before.at
    driver_s = driving.result()
    dead = await _until_drained(stack, names, channel)
    after = await _snapshot(stack)
    pg_ticks = backends.ticks()
    elapsed = after.at - before.at
    cpu_ms = {k: v * 1000 / TICK / n for k, v in _diff(after.ticks, before.ticks).items()}
    cpu_ms["postgres"] = pg_ticks * 1000 / TICK / n
    cpu_ms["driver"] = driver_s * 1000 / n
    counted = _statement_diff(after, before, "kinds")
    kinds = {k: v / n for k, v in counted.items() if not k.startswith("gc_")}
    # The garbage collector's CPU, by process (db/statement_stats.py times its runs).
    # The garbage collector's runs and CPU by generation, by process (statement_stats times
    # its runs): `gc_us_<generation>` and `gc_runs_<generation>` per purchase.
    gc = {
        name: {
            k: v / n
            for k, v in _diff(counts["kinds"], before.statements[name]["kinds"]).items()
            if k.startswith("gc_")
        }
        for name, counts in after.statements.items()
    }
    gc_ms = {
        name: sum(v for k, v in g.items() if k.startswith("gc_us_")) / 1000
        for name, g in gc.items()
    }
    texts = {k: v / n for k, v in _statement_diff(after, before, "texts").items()}
    messages = await stack.conn.fetch(
        """SELECT queue, message_type, count(*) AS n FROM outbox WHERE id > $1
            GROUP BY 1, 2 ORDER BY 1, 2""",
        before.outbox_id,
    )
    # Where each purchase's time went: the webhook stored (its row's `received_at`), the
    # move to PAID (the transition's `at`: the processing transaction's start, after its two
    # calls to the sandbox) and CREDITED (`credited_at`, in the crediting transaction).
    rows = await stack.conn.fetch(
        """SELECT p.order_id, p.credited_at,
                  (SELECT min(w.received_at) FROM payment_webhooks w
                    WHERE w.order_id = p.order_id) AS received,
                  (SELECT min(t.at) FROM payment_transitions t
                    WHERE t.payment_id = p.id AND t.to_status = 'PAID') AS paid
             FROM payments p WHERE p.order_id = ANY($1::text[])""",
        list(paid_at),
    )
    latencies = sorted(r["credited_at"].timestamp() - paid_at[r["order_id"]] for r in rows)
    legs = {
        "to_webhook": sorted(r["received"].timestamp() - paid_at[r["order_id"]] for r in rows),
        "to_paid": sorted((r["paid"] - r["received"]).total_seconds() for r in rows),
        "to_credited": sorted((r["credited_at"] - r["paid"]).total_seconds() for r in rows),
    }
    result: dict[str, Any] = {
        "purchases": n,
        "rate": rate,
        "credited_s": credited_s,
        "drained_s": elapsed,
        "per_s": n / credited_s,
        "dead_letters": dead,
        "cpu_ms": cpu_ms,
        "statements": kinds,
        "gc_ms": gc_ms,
        "gc": gc,
        "statement_texts": dict(sorted(texts.items(), key=lambda kv: -kv[1])),
        "messages": {f"{r['queue']} {r['message_type']}": r["n"] / n for r in messages},
        "latency_p50_s": percentile(latencies, 50),
        "latency_p99_s": percentile(latencies, 99),
        "latency_max_s": latencies[-1],
        "legs_p50_s": {k: percentile(v, 50) for k, v in legs.items()},
        "legs_p99_s": {k: percentile(v, 99) for k, v in legs.items()},
    }
    if idle is not None:
        # What the same processes spend idle over as long a time, per purchase.
        result["idle_share"] = {k: v * elapsed / n for k, v in idle.items()}
    return result


async def _idle(stack: Stack) -> dict[str, float]:
    """CPU ms and statements per second of the processes doing nothing."""
    before = await _snapshot(stack)
    backends = Backends(stack.db, exclude={stack.backend_pid})
    backends.start()
    await asyncio.sleep(IDLE_S)
    after = await _snapshot(stack)
    pg = backends.ticks()
    elapsed = after.at - before.at
    out = {
        f"cpu_ms.{k}": v * 1000 / TICK / elapsed
        for k, v in _diff(after.ticks, before.ticks).items()
    }
    out["cpu_ms.postgres"] = pg * 1000 / TICK / elapsed
    for k, v in _statement_diff(after, before, "kinds").items():
        out[f"statements.{k}"] = v / elapsed
    return out


async def _purchase_windows(stack: Stack, n: int, concurrency: int, warm_up: int) -> dict[str, Any]:
    names = Names(stack.prefix, len(stack.settings.retry_delays_s))
    connection = await aio_pika.connect(stack.broker_url)
    async with connection:
        channel = await connection.channel()
        await _window(stack, names, channel, warm_up, concurrency, None, None)
        idle = await _idle(stack)
        print("  full speed: buying", flush=True)
        full = await _window(stack, names, channel, n, concurrency, None, idle)
        rate = full["per_s"] * LATENCY_LOAD
        print(f"  {full['per_s']:.1f}/s; at {rate:.1f}/s: buying", flush=True)
        paced = await _window(stack, names, channel, n, concurrency, rate, idle)
    return {"idle": idle, "full": full, "paced": paced}


def _round_purchases(
    db: str, prefix: str, broker: Broker, n: int, concurrency: int, workers: int
) -> dict[str, Any]:
    url = db_url(db)
    api, sandbox = f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"
    stats_dir = Path(tempfile.mkdtemp(prefix="cdb-pbench-stats-"))
    env = {
        **_env(url, prefix, api, sandbox),
        "BILLING_RABBITMQ_URL": broker.url,
        "BILLING_DB_STATEMENT_STATS_DIR": str(stats_dir),
    }
    procs = {
        "sandbox": _start(
            env, "sandbox", "--port", sandbox.rsplit(":", 1)[1], "--rate-limits", "off"
        ),
        "api": _start(env, "api", "--port", api.rsplit(":", 1)[1]),
        **{f"worker{i + 1}": _start(env, "worker") for i in range(workers)},
    }

    async def run() -> dict[str, Any]:
        await ready(f"{sandbox}/_sandbox/health")
        await ready(f"{api}/readyz")
        conn = await asyncpg.connect(dsn(db))
        try:
            stack = Stack(
                db=db,
                prefix=prefix,
                api_url=api,
                broker_url=broker.url,
                broker_pid=broker.pid(),
                stats_dir=stats_dir,
                procs=procs,
                conn=conn,
                backend_pid=int(await conn.fetchval("SELECT pg_backend_pid()")),
                settings=Settings(database_url=url),
            )
            return await _purchase_windows(stack, n, concurrency, WARM_UP_PURCHASES)
        finally:
            await conn.close()

    try:
        return asyncio.run(run())
    finally:
        stop(list(procs.values()))
        shutil.rmtree(stats_dir, ignore_errors=True)


@dataclass
class Broker:
    """The RabbitMQ the round's processes use: a node of the benchmark's own (its CPU is
    then the app's alone) or the machine's (no broker column)."""

    url: str
    node: rc.Node | None = None

    def pid(self) -> int | None:
        return rc.pid(self.node) if self.node is not None else None


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
                # Sent again after a dropped connection, as Cashfree retries a delivery (a
                # reused keep-alive connection the server was closing; the dedupe key makes
                # the resend harmless): the latency counts from the first try.
                r = await _send(
                    client, "POST", "/v1/webhooks/cashfree", content=body, headers=headers
                )
                latencies.append(time.perf_counter() - sent)
                if r.status_code != 200 or r.json()["status"] != "accepted":
                    raise RuntimeError(f"webhook: {r.status_code} {r.text[:300]}")

        started = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(concurrency)))
        return len(bodies) / (time.perf_counter() - started), latencies


WARM_UP = 200


def _round_webhooks(url: str, prefix: str, n: int, concurrency: int) -> dict[str, float]:
    api = f"http://127.0.0.1:{free_port()}"
    env = _env(url, prefix, api, "http://127.0.0.1:9")
    procs = [_start(env, "api", "--port", api.rsplit(":", 1)[1])]
    try:
        asyncio.run(ready(f"{api}/readyz"))
        orders = asyncio.run(_seed_orders(url, WARM_UP + n, uuid.uuid4().hex[:8]))
        secret = Settings().cashfree_client_secret.get_secret_value()
        # Unmeasured: the first requests fill the statement caches and the connection pool.
        asyncio.run(_post_webhooks(api, secret, orders[:WARM_UP], concurrency))
        cpu_before = cpu_s(procs[0].pid)
        per_s, latencies = asyncio.run(
            _post_webhooks(api, secret, orders[WARM_UP:], concurrency, start=WARM_UP)
        )
        cpu = cpu_s(procs[0].pid) - cpu_before
        return {
            "webhooks_per_s": per_s,
            "webhook_api_cpu_ms": cpu * 1000 / n,
            "webhook_p50_ms": percentile(latencies, 50) * 1000,
            "webhook_p99_ms": percentile(latencies, 99) * 1000,
        }
    finally:
        stop(procs)


async def _clear_outbox(url: str) -> None:
    engine = make_engine(Settings(database_url=url), pool_size=1)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("DELETE FROM outbox WHERE sent_at IS NULL"))
    finally:
        await engine.dispose()


async def _drop_queues(prefix: str, url: str | None = None) -> None:
    connection = await aio_pika.connect(url or Settings().rabbitmq_url)
    async with connection:
        await delete(await connection.channel(), Names(prefix, len(Settings().retry_delays_s)))


def _flat(prefix: str, value: Any, out: dict[str, float]) -> None:
    """A round's nested figures as `a.b.c` keys (the medians are taken key by key)."""
    if isinstance(value, dict):
        for k, v in value.items():
            _flat(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        out[prefix] = float(value)


def _own_broker(work: Path) -> Broker:
    """One RabbitMQ node of the benchmark's own (`cdb-f@localhost`; scale_run uses a to d),
    so its CPU is this benchmark's alone."""
    node = rc.start(work, 1, port=5816, dist_port=25816, first=5)[0]
    return Broker(node.url, node)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--purchases", type=int, default=600)
    parser.add_argument("--webhooks", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--broker",
        choices=("own", "shared"),
        default="own",
        help="own: a RabbitMQ node started for the run (needs root), whose CPU is counted; "
        "shared: BILLING_RABBITMQ_URL, not counted",
    )
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args()
    if not (args.purchases or args.webhooks):
        raise SystemExit("nothing to run: --purchases 0 and --webhooks 0")

    tag0 = uuid.uuid4().hex[:8]
    db, pgb = f"cdb_pbench_{tag0}", f"cdb_ppgbench_{tag0}"
    prefix = f"pbench{tag0}."
    work = Path(tempfile.mkdtemp(prefix="cdb-pbench-"))
    work.chmod(0o755)
    asyncio.run(admin_sql(f'CREATE DATABASE "{db}"'))
    asyncio.run(admin_sql(f'CREATE DATABASE "{pgb}"'))
    rounds: list[dict[str, float]] = []
    details: list[dict[str, Any]] = []
    broker = Broker(Settings().rabbitmq_url)
    try:
        if args.purchases and args.broker == "own":
            broker = _own_broker(work / "rabbit")
        upgrade(db_url(db))
        pgbench_init(pgb, 16)
        for i in range(args.rounds):
            load = os.getloadavg()[0]
            tps = pgbench_tps(pgb, 16, 10)
            measured: dict[str, float] = {"pgbench_tps": tps, "load_1min": load}
            line = f"round {i + 1}: load {load:.1f}, pgbench {tps:.0f} tps"
            if args.purchases:
                detail = _round_purchases(
                    db, prefix, broker, args.purchases, args.concurrency, args.workers
                )
                details.append(detail)
                # Statement texts stay in the details (bench/results), not in the medians.
                _flat(
                    "",
                    {
                        k: {kk: vv for kk, vv in v.items() if kk != "statement_texts"}
                        for k, v in detail.items()
                    },
                    measured,
                )
                full, paced = detail["full"], detail["paced"]
                line += (
                    f", purchases {full['per_s']:.1f}/s, CPU {sum(full['cpu_ms'].values()):.1f}"
                    f" ms/purchase, at {paced['rate']:.1f}/s success→credited p50 "
                    f"{paced['latency_p50_s'] * 1000:.0f} ms p99 "
                    f"{paced['latency_p99_s'] * 1000:.0f} ms"
                )
            if args.webhooks:
                measured |= _round_webhooks(db_url(db), prefix, args.webhooks, args.concurrency)
                # The ingest run left outbox rows nobody will relay: clear them between rounds.
                asyncio.run(_clear_outbox(db_url(db)))
                line += (
                    f", webhook ingest {measured['webhooks_per_s']:.0f}/s, "
                    f"API CPU {measured['webhook_api_cpu_ms']:.2f} ms/webhook"
                )
            rounds.append(measured)
            print(line, flush=True)
    finally:
        if broker.node is not None:
            rc.stop(work / "rabbit", 1, port=5816, dist_port=25816, first=5)
        else:
            asyncio.run(_drop_queues(prefix, broker.url))
        asyncio.run(admin_sql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
        asyncio.run(admin_sql(f'DROP DATABASE IF EXISTS "{pgb}" WITH (FORCE)'))
        shutil.rmtree(work, ignore_errors=True)

    command = (
        f".venv/bin/python bench/payments_bench.py --rounds {args.rounds} --purchases "
        f"{args.purchases} --webhooks {args.webhooks} --concurrency {args.concurrency} "
        f"--workers {args.workers}" + (" --broker shared" if args.broker == "shared" else "")
    )
    when = datetime.now(UTC).isoformat(timespec="seconds")
    loads = ", ".join(f"{r['load_1min']:.1f}" for r in rounds)
    scope = f", load average (1 min) at each round's start {loads}"
    if args.purchases:
        summary = {"when": when, "command": command, "rounds": rounds, "details": details}
        table = _purchase_tables(rounds, args)
        publish_results("payments-purchases", summary, table, docs=not args.no_docs, scope=scope)
    if args.webhooks:
        summary = {"when": when, "command": command, "rounds": rounds}
        publish_results(
            "payments-ingest",
            summary,
            _ingest_table(rounds, args),
            docs=not args.no_docs,
            scope=scope,
        )


def _ingest_table(rounds: list[dict[str, float]], args: argparse.Namespace) -> str:
    med, ratio = summarise(rounds)
    cpu_ms = med("webhook_api_cpu_ms")
    return (
        "| measure | median of rounds | median ratio to pgbench (per round) |\n"
        "|---|---:|---:|\n"
        f"| pgbench TPC-B, 16 clients | {med('pgbench_tps'):,.0f} tps | 1.00 |\n"
        f"| webhook ingest alone (verify, store raw, outbox, 200), {args.concurrency} senders | "
        f"{med('webhooks_per_s'):,.0f}/s | {ratio('webhooks_per_s'):.3f} |\n"
        f"| webhook ingest latency seen by the senders, p50 / p99 | "
        f"{med('webhook_p50_ms'):,.1f} ms / {med('webhook_p99_ms'):,.1f} ms | |\n"
        f"| API process CPU (user + system) per ingested webhook | {cpu_ms:.2f} ms "
        f"(one core's ceiling: {1000 / cpu_ms:,.0f}/s) | |\n"
    )


# Statement kinds (db/statement_stats.py) that are a round trip each, and those that end a
# transaction (a statement on the bare driver is a transaction of its own).
_ROUND_TRIP_KINDS = ("begin", "commit", "rollback", "savepoint", "release_savepoint")
_STATEMENT_VERBS = ("select", "insert", "update", "delete", "with", "other")


def _purchase_tables(rounds: list[dict[str, float]], args: argparse.Namespace) -> str:
    med, ratio = summarise(rounds)

    def m(key: str) -> float:
        present = [r[key] for r in rounds if key in r]
        return float(statistics.median(present)) if present else 0.0

    def per_round(key: str) -> str:
        return ", ".join(f"{r.get(key, 0.0):.1f}" for r in rounds)

    procs = ["api", *(f"worker{i + 1}" for i in range(args.workers)), "sandbox", "postgres"]
    procs += ["broker", "driver"] if any("full.cpu_ms.broker" in r for r in rounds) else ["driver"]
    out = [
        "| measure | median of rounds | median ratio to pgbench (per round) |",
        "|---|---:|---:|",
        f"| pgbench TPC-B, 16 clients | {med('pgbench_tps'):,.0f} tps | 1.00 |",
        f"| completed purchases end to end (order → checkout → webhook → credits), "
        f"{args.concurrency} buyers, {args.workers} workers | {med('full.per_s'):,.1f}/s "
        f"({med('full.per_s') * 60:,.0f}/min) | {ratio('full.per_s'):.4f} |",
        f"| the same at {LATENCY_LOAD:.0%} of that pace: success at the sandbox → CREDITED, "
        f"p50 / p99 | {m('paced.latency_p50_s') * 1000:,.0f} ms / "
        f"{m('paced.latency_p99_s') * 1000:,.0f} ms (at {m('paced.rate'):.1f}/s) | |",
        "| — of which success → webhook stored / → PAID / → CREDITED, p50 (p99) | "
        + " / ".join(
            f"{m(f'paced.legs_p50_s.{leg}') * 1000:,.0f} "
            f"({m(f'paced.legs_p99_s.{leg}') * 1000:,.0f})"
            for leg in ("to_webhook", "to_paid", "to_credited")
        )
        + " ms | |",
        f"| at full speed ({args.concurrency} buyers): success → CREDITED, p50 / p99 | "
        f"{m('full.latency_p50_s') * 1000:,.0f} ms / {m('full.latency_p99_s') * 1000:,.0f} ms"
        " | |",
        "",
        "CPU per completed purchase (ms, user + system, from the first order until the "
        "follow-up work drained; medians of rounds, each round's in brackets):",
        "",
        f"| process | full speed | at {LATENCY_LOAD:.0%} | of which idle polling, at "
        f"{LATENCY_LOAD:.0%} |",
        "|---|---:|---:|---:|",
    ]
    total_full = total_paced = 0.0
    for p in procs:
        full, paced = m(f"full.cpu_ms.{p}"), m(f"paced.cpu_ms.{p}")
        total_full += full
        total_paced += paced
        idle = m(f"paced.idle_share.cpu_ms.{p}")
        out.append(
            f"| {p} | {full:.1f} ({per_round(f'full.cpu_ms.{p}')}) | {paced:.1f} "
            f"({per_round(f'paced.cpu_ms.{p}')}) | {idle:.1f} |"
        )
    workers_full = sum(m(f"full.cpu_ms.worker{i + 1}") for i in range(args.workers))
    workers_paced = sum(m(f"paced.cpu_ms.worker{i + 1}") for i in range(args.workers))
    out += [
        f"| API + workers | {m('full.cpu_ms.api') + workers_full:.1f} | "
        f"{m('paced.cpu_ms.api') + workers_paced:.1f} | |",
        f"| all (sums of the medians) | {total_full:.1f} | {total_paced:.1f} | |",
        "",
        "Per completed purchase, at full speed (statements and transactions as the API and "
        "the workers sent them; messages as the outbox wrote them):",
        "",
        "| measure | per purchase | of which idle polling |",
        "|---|---:|---:|",
    ]
    statements = sum(m(f"full.statements.{v}") for v in _STATEMENT_VERBS)
    driver = sum(m(f"full.statements.driver_{v}") for v in _STATEMENT_VERBS)
    trips = statements + driver + sum(m(f"full.statements.{k}") for k in _ROUND_TRIP_KINDS)
    xacts = m("full.statements.commit") + m("full.statements.rollback") + driver

    def idle_of(kinds: list[str]) -> float:
        return sum(m(f"full.idle_share.statements.{k}") for k in kinds)

    verbs = list(_STATEMENT_VERBS)
    drivers = [f"driver_{v}" for v in verbs]
    out += [
        f"| SQL statements (through SQLAlchemy) | {statements:.1f} | {idle_of(verbs):.1f} |",
        f"| SQL statements on the bare driver (each its own transaction) | {driver:.1f} | "
        f"{idle_of(drivers):.1f} |",
        f"| transactions (COMMIT + ROLLBACK + bare statements) | {xacts:.1f} | "
        f"{idle_of(['commit', 'rollback', *drivers]):.1f} |",
        f"| round trips (statements + BEGIN + COMMIT/ROLLBACK + savepoints) | {trips:.1f} | "
        f"{idle_of([*verbs, *drivers, *_ROUND_TRIP_KINDS]):.1f} |",
    ]
    kinds = sorted(
        {k.split(".", 2)[2] for r in rounds for k in r if k.startswith("full.statements.")}
    )
    by_kind = ", ".join(f"{k} {m(f'full.statements.{k}'):.2f}" for k in kinds if k != "connect")
    out.append(f"| by kind: {by_kind} | | |")
    out.append(
        f"| new connections to PostgreSQL (pool overflow) | {m('full.statements.connect'):.2f}"
        f" | {idle_of(['connect']):.2f} |"
    )
    gc = ", ".join(
        f"{p} {m(f'full.gc_ms.{p}'):.2f}" for p in procs if p.startswith(("api", "worker"))
    )
    out.append(f"| garbage collector CPU, ms (in the CPU above) | {gc} | |")
    messages = sorted(
        {k.split(".", 2)[2] for r in rounds for k in r if k.startswith("full.messages.")}
    )
    total_messages = sum(m(f"full.messages.{k}") for k in messages)
    out.append(f"| outbox messages | {total_messages:.2f} | |")
    for k in messages:
        queue, _, kind = k.partition(" ")
        out.append(f"| — `{kind}` → {queue} | {m(f'full.messages.{k}'):.2f} | |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    main()
