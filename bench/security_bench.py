"""Fraud scoring and rate limits: what they add to opening an order and to ingesting a webhook.

    .venv/bin/python bench/security_bench.py [--rounds 3] [--orders 400] [--webhooks 2000]
                                             [--concurrency 16]

Each round, on the same PostgreSQL and Redis:
  1. pgbench TPC-B (`-c 16 -j 2 -T 10`, scale 16), the yardstick;
  2. for each of "off" (BILLING_FRAUD_ENABLED=false, BILLING_RATE_LIMIT_ENABLED=false) and
     "on" (both on: every order scored by the rules with their default weights, velocity
     windows in Redis; every request charged to its buckets, limits set high enough never
     to refuse, so both runs do the same work): one API process and a sandbox;
     - `orders` orders opened (POST /v1/payments/orders → the sandbox's create-order over
       HTTP), by `concurrency` members, each from its own device (X-Device-Id);
     - `webhooks` signed PAYMENT_SUCCESS webhooks for existing orders (verify, store raw,
       outbox, 200), no worker running.
The figures: requests per second, and the API process's CPU time per request (utime + stime
from /proc, before and after): the CPU column is the one that tells how many cores a target
needs; "added" is on minus off. Medians over rounds go to bench/results/security.json and
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx

from commdesk_billing.config import Settings
from commdesk_billing.db.migrate import upgrade
from commdesk_billing.security.jwt import Role, issue_token
from commdesk_billing.stack import free_port
from payments_bench import (
    _clear_outbox,
    _drop_queues,
    _env,
    _post_webhooks,
    _seed_orders,
    _start,
)
from pgtools import admin_sql, db_url, pgbench_init, pgbench_tps, publish_results, summarise
from runstats import cpu_s, ready, stop

# High enough that no bucket ever refuses: the "on" run must do the work the "off" run does.
_HIGH = {
    f"BILLING_RATE_LIMIT_{c}_{w}{b}".upper(): "10000000" if not b else "1000000"
    for c in ("orders", "money", "reads")
    for w in ("user", "ip")
    for b in ("", "_burst")
} | {"BILLING_RATE_LIMIT_WEBHOOKS_IP": "10000000", "BILLING_RATE_LIMIT_WEBHOOKS_IP_BURST": "1000"}
MODES = {
    "off": {"BILLING_FRAUD_ENABLED": "false", "BILLING_RATE_LIMIT_ENABLED": "false"},
    "on": {"BILLING_FRAUD_ENABLED": "true", "BILLING_RATE_LIMIT_ENABLED": "true", **_HIGH},
}


async def _orders(api: str, settings: Settings, n: int, concurrency: int, tag: str) -> float:
    tokens = [
        issue_token(settings, sub=f"sbench-{tag}-{i}", role=Role.member) for i in range(concurrency)
    ]
    limits = httpx.Limits(max_connections=concurrency * 2)
    async with httpx.AsyncClient(base_url=api, timeout=60, limits=limits) as client:
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(n):
            queue.put_nowait(i)

        async def member(m: int) -> None:
            headers = {
                "Authorization": f"Bearer {tokens[m]}",
                "X-Device-Id": f"bench-device-{tag}-{m}",
            }
            while not queue.empty():
                i = queue.get_nowait()
                r = await client.post(
                    "/v1/payments/orders",
                    json={"pack_code": "pack_300", "customer_phone": "9999999999"},
                    headers={**headers, "Idempotency-Key": f"{tag}-{i}"},
                )
                # 403 payment_blocked is scoring at work (velocity per member): it did the
                # same scoring work, and the rest of the order's path is then not taken.
                if r.status_code not in (201, 403):
                    raise RuntimeError(f"order: {r.status_code} {r.text[:300]}")

        started = time.perf_counter()
        await asyncio.gather(*(member(m) for m in range(concurrency)))
        return n / (time.perf_counter() - started)


def _round(url: str, prefix: str, mode: str, args: argparse.Namespace) -> dict[str, float]:
    api, sandbox = f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"
    env = {
        **_env(url, prefix, api, sandbox),
        **MODES[mode],
        # Every order opens (velocity rules would block a member's 16th order an hour; the
        # scoring runs all the same). A bench of our own: its own Redis keys.
        "BILLING_FRAUD_USER_VELOCITY_MAX": "100000",
        "BILLING_FRAUD_IP_VELOCITY_MAX": "100000",
        "BILLING_FRAUD_DEVICE_VELOCITY_MAX": "100000",
        "BILLING_REDIS_KEY_PREFIX": f"{prefix}{mode}:",
    }
    procs = [
        _start(env, "sandbox", "--port", sandbox.rsplit(":", 1)[1], "--rate-limits", "off"),
        _start(env, "api", "--port", api.rsplit(":", 1)[1]),
    ]
    try:
        asyncio.run(ready(f"{sandbox}/_sandbox/health"))
        asyncio.run(ready(f"{api}/readyz"))
        pid = procs[1].pid
        settings = Settings(database_url=url)
        tag = uuid.uuid4().hex[:8]
        cpu0 = cpu_s(pid)
        orders = asyncio.run(_orders(api, settings, args.orders, args.concurrency, tag))
        cpu1 = cpu_s(pid)
        seeded = asyncio.run(_seed_orders(url, args.webhooks, tag))
        secret = Settings().cashfree_client_secret.get_secret_value()
        cpu2 = cpu_s(pid)
        hooks = asyncio.run(_post_webhooks(api, secret, seeded, args.concurrency))
        cpu3 = cpu_s(pid)
        return {
            f"{mode}_order_per_s": orders,
            f"{mode}_order_cpu_ms": (cpu1 - cpu0) * 1000 / args.orders,
            f"{mode}_webhook_per_s": hooks,
            f"{mode}_webhook_cpu_ms": (cpu3 - cpu2) * 1000 / args.webhooks,
        }
    finally:
        stop(procs)
        asyncio.run(_clear_outbox(url))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--orders", type=int, default=400)
    parser.add_argument("--webhooks", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args()

    tag0 = uuid.uuid4().hex[:8]
    db, pgb = f"cdb_sbench_{tag0}", f"cdb_spgbench_{tag0}"
    prefix = f"sbench{tag0}."
    asyncio.run(admin_sql(f'CREATE DATABASE "{db}"'))
    asyncio.run(admin_sql(f'CREATE DATABASE "{pgb}"'))
    rounds: list[dict[str, float]] = []
    try:
        upgrade(db_url(db))
        pgbench_init(pgb, 16)
        for i in range(args.rounds):
            row: dict[str, float] = {"pgbench_tps": pgbench_tps(pgb, 16, 10)}
            # Alternate which goes first, so neither always meets a warmer database.
            for mode in ("off", "on") if i % 2 == 0 else ("on", "off"):
                row |= _round(db_url(db), prefix, mode, args)
            rounds.append(row)
            print(
                f"round {i + 1}: pgbench {row['pgbench_tps']:.0f} tps; orders off "
                f"{row['off_order_per_s']:.0f}/s {row['off_order_cpu_ms']:.2f} ms CPU, on "
                f"{row['on_order_per_s']:.0f}/s {row['on_order_cpu_ms']:.2f} ms; webhooks off "
                f"{row['off_webhook_per_s']:.0f}/s {row['off_webhook_cpu_ms']:.2f} ms, on "
                f"{row['on_webhook_per_s']:.0f}/s {row['on_webhook_cpu_ms']:.2f} ms",
                flush=True,
            )
    finally:
        asyncio.run(_drop_queues(prefix))
        asyncio.run(admin_sql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
        asyncio.run(admin_sql(f'DROP DATABASE IF EXISTS "{pgb}" WITH (FORCE)'))

    med, ratio = summarise(rounds)
    for r in rounds:  # per round, so the median of the differences is a difference of a round
        r["added_order_cpu_ms"] = r["on_order_cpu_ms"] - r["off_order_cpu_ms"]
        r["added_webhook_cpu_ms"] = r["on_webhook_cpu_ms"] - r["off_webhook_cpu_ms"]
    command = (
        f".venv/bin/python bench/security_bench.py --rounds {args.rounds} --orders "
        f"{args.orders} --webhooks {args.webhooks} --concurrency {args.concurrency}"
    )

    def line(what: str, key: str) -> str:
        return (
            f"| {what} | {med(f'off_{key}_per_s'):,.0f}/s ({ratio(f'off_{key}_per_s'):.3f}) | "
            f"{med(f'on_{key}_per_s'):,.0f}/s ({ratio(f'on_{key}_per_s'):.3f}) | "
            f"{med(f'off_{key}_cpu_ms'):.2f} ms | {med(f'on_{key}_cpu_ms'):.2f} ms | "
            f"{med(f'added_{key}_cpu_ms'):+.2f} ms |\n"
        )

    table = (
        f"pgbench TPC-B, 16 clients: {med('pgbench_tps'):,.0f} tps (median of rounds); "
        "throughput in brackets is the median per-round ratio to it.\n\n"
        "| request | off: rate (ratio) | on: rate (ratio) | off: API CPU/request | "
        "on: API CPU/request | added CPU/request |\n"
        "|---|---:|---:|---:|---:|---:|\n"
        + line(f"open an order, {args.concurrency} members", "order")
        + line(f"signed webhook ingest, {args.concurrency} senders", "webhook")
    )
    summary: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "rounds": rounds,
    }
    publish_results("security", summary, table, docs=not args.no_docs)


if __name__ == "__main__":
    main()
