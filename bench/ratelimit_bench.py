"""Rate-limit benchmark: the CPU one request spends in the limiter, with Redis and with the
local fallback (Redis away).

    .venv/bin/python bench/ratelimit_bench.py [--rounds 3] [--requests 5000] [--no-docs]

Each round:
  1. pgbench TPC-B (`-c 16 -j 2 -T 10`, scale 16), the yardstick;
  2. `requests` requests driven straight into the ASGI stack (no sockets, no HTTP parsing),
     through an endpoint that answers at once, bare and behind `RateLimits`: a member's
     read (a JWT verified, the user's and the address's buckets decided in one Lua call),
     and a forged webhook (answered 401 by the endpoint, then charged to its address's
     bucket). Once against this machine's Redis, once with Redis unreachable (the local
     limiter: the outage is remembered, so no connection is tried per request).
The figure is process CPU time (`time.process_time`) per request, limiter minus bare: what
the limiter costs our API process; Redis's own CPU is not in it.
  3. the same over HTTP, against real API processes (`commdesk-billing api`, one uvicorn
     process each): limits off, on with Redis, on with Redis unreachable; `concurrency`
     clients send a member's GET of a path no route has (a 404: no database, so the
     difference is the limiter) and forged Cashfree webhooks (401 after the signature
     check, then charged); the API process's CPU (utime + stime from /proc) per request.
Medians over rounds go to bench/results/ratelimit.json and docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import httpx

from commdesk_billing.config import Settings
from commdesk_billing.kv.store import RedisStore
from commdesk_billing.security.jwt import Role, decode_token, issue_token
from commdesk_billing.security.ratelimit import RateLimits
from commdesk_billing.stack import free_port
from pgtools import admin_sql, pgbench_init, pgbench_tps, publish_results, summarise
from runstats import cpu_s

_LIMITS: dict[str, Any] = {
    f"rate_limit_{c}_{w}{b}": 10**7 if not b else 10**6
    for c in ("orders", "money", "reads")
    for w in ("user", "ip")
    for b in ("", "_burst")
} | {"rate_limit_webhooks_ip": 10**7, "rate_limit_webhooks_ip_burst": 10**6}


async def _endpoint(scope: Any, receive: Any, send: Any) -> None:
    status = 401 if scope["path"].startswith("/v1/webhooks/") else 200
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(message: Any) -> None:
    return None


def _scopes(settings: Settings, store: RedisStore | None, kind: str) -> list[dict[str, Any]]:
    state = SimpleNamespace(redis=store, settings=settings)
    out = []
    for i in range(100):
        if kind == "read":
            tok = issue_token(settings, sub=f"rlbench-{i}", role=Role.member)
            path, method = f"/v1/wallets/{uuid.uuid4()}", "GET"
            headers = [(b"authorization", f"Bearer {tok}".encode())]
        else:
            path, method = "/v1/webhooks/cashfree", "POST"
            headers = [(b"x-webhook-signature", b"forged")]
        out.append(
            {
                "type": "http",
                "method": method,
                "path": path,
                "headers": headers,
                "client": (f"10.0.{i // 50}.{i % 50}", 40000),
                "app": SimpleNamespace(state=state),
            }
        )
    return out


async def _cpu_us(app: Any, scopes: list[dict[str, Any]], n: int) -> float:
    for scope in scopes:  # warm: scripts loaded, connections open
        await app(dict(scope), _receive, _send)
    started = time.process_time()
    for i in range(n):
        await app(dict(scopes[i % len(scopes)]), _receive, _send)
    return (time.process_time() - started) / n * 1e6


async def _round(n: int) -> dict[str, float]:
    prefix = f"rlbench{uuid.uuid4().hex[:8]}:"
    settings = Settings(redis_key_prefix=prefix, **_LIMITS)
    limited = RateLimits(_endpoint, settings)
    local = RateLimits(_endpoint, settings)
    redis = RedisStore.from_settings(settings)
    # Nothing listens there; the outage is remembered for the whole run.
    away = RedisStore(f"redis://127.0.0.1:{free_port()}/0", prefix=prefix, retry_after_s=3600)
    result: dict[str, float] = {}
    try:
        tok = issue_token(settings, sub="rlbench-jwt", role=Role.member)
        started = time.process_time()
        for _ in range(n):
            decode_token(settings, tok)
        result["jwt_us"] = (time.process_time() - started) / n * 1e6
        for kind in ("read", "webhook"):
            bare = await _cpu_us(_endpoint, _scopes(settings, redis, kind), n)
            with_redis = await _cpu_us(limited, _scopes(settings, redis, kind), n)
            with_local = await _cpu_us(local, _scopes(settings, away, kind), n)
            result[f"{kind}_redis_us"] = with_redis - bare
            result[f"{kind}_local_us"] = with_local - bare
    finally:
        await redis.delete_prefix()
        await redis.aclose()
        await away.aclose()
    return result


def _start_api(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    cli = [sys.executable, "-m", "commdesk_billing.cli", "api", "--port", str(port)]
    return subprocess.Popen(cli, env=env)


async def _http_cpu_us(env: dict[str, str], n: int, concurrency: int) -> dict[str, float]:
    """CPU of one API process per request: a member's 404 read, then a forged webhook."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = _start_api(env, port)
    settings = Settings()
    tokens = [issue_token(settings, sub=f"rlhttp-{i}", role=Role.member) for i in range(100)]
    out: dict[str, float] = {}
    try:
        limits = httpx.Limits(max_connections=concurrency)
        async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:
            for _ in range(300):
                try:
                    if (await client.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)

            async def read(i: int) -> int:
                auth = {"Authorization": f"Bearer {tokens[i % 100]}"}
                return (await client.get("/v1/no-such-route", headers=auth)).status_code

            async def forged(i: int) -> int:
                headers = {
                    "content-type": "application/json",
                    "x-webhook-timestamp": str(int(time.time() * 1000)),
                    "x-webhook-signature": "Zm9yZ2Vk",
                }
                r = await client.post("/v1/webhooks/cashfree", content=b'{"x":1}', headers=headers)
                return r.status_code

            for name, call, expect in (("read", read, 404), ("webhook", forged, 401)):
                queue = list(range(n))

                async def sender(c: Any = call, q: list[int] = queue) -> list[int]:
                    got = []
                    while q:
                        got.append(await c(q.pop()))
                    return got

                for i in range(200):  # warm
                    await call(i)
                before = cpu_s(proc.pid)
                answers = await asyncio.gather(*(sender() for _ in range(concurrency)))
                spent = cpu_s(proc.pid) - before
                statuses = {s for batch in answers for s in batch}
                if statuses != {expect}:
                    raise RuntimeError(f"{name}: answered {statuses}, expected {expect}")
                out[name] = spent / n * 1e6
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return out


async def _http_round(n: int, concurrency: int) -> dict[str, float]:
    prefix = f"rlbench{uuid.uuid4().hex[:8]}:"
    env = {
        **os.environ,
        "BILLING_LOG_LEVEL": "ERROR",
        "BILLING_REDIS_KEY_PREFIX": prefix,
        **{f"BILLING_{k.upper()}": str(v) for k, v in _LIMITS.items()},
    }
    off = await _http_cpu_us({**env, "BILLING_RATE_LIMIT_ENABLED": "false"}, n, concurrency)
    on = await _http_cpu_us(env, n, concurrency)
    dead = f"redis://127.0.0.1:{free_port()}/0"
    local = await _http_cpu_us({**env, "BILLING_REDIS_URL": dead}, n, concurrency)
    store = RedisStore.from_settings(Settings(redis_key_prefix=prefix))
    try:
        await store.delete_prefix()
    finally:
        await store.aclose()
    return {
        **{f"http_{k}_off_us": v for k, v in off.items()},
        **{f"http_{k}_redis_us": on[k] - v for k, v in off.items()},
        **{f"http_{k}_local_us": local[k] - v for k, v in off.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--http-requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args()

    pgb = f"cdb_rlpgbench_{uuid.uuid4().hex[:8]}"
    asyncio.run(admin_sql(f'CREATE DATABASE "{pgb}"'))
    rounds: list[dict[str, float]] = []
    try:
        pgbench_init(pgb, 16)
        for i in range(args.rounds):
            tps = pgbench_tps(pgb, 16, 10)
            measured = asyncio.run(_round(args.requests))
            measured |= asyncio.run(_http_round(args.http_requests, args.concurrency))
            rounds.append({"pgbench_tps": tps, **measured})
            print(f"round {i + 1}: pgbench {tps:.0f} tps, {measured}", flush=True)
    finally:
        asyncio.run(admin_sql(f'DROP DATABASE IF EXISTS "{pgb}" WITH (FORCE)'))

    med, _ratio = summarise(rounds)
    command = (
        f".venv/bin/python bench/ratelimit_bench.py --rounds {args.rounds} "
        f"--requests {args.requests} --http-requests {args.http_requests} "
        f"--concurrency {args.concurrency}"
    )
    table = (
        "| measure (CPU of the API process per request) | median of rounds |\n"
        "|---|---:|\n"
        f"| pgbench TPC-B, 16 clients (yardstick) | {med('pgbench_tps'):,.0f} tps |\n"
        f"| member read, limiter with Redis (JWT + 2 buckets, one Lua call) | "
        f"{med('read_redis_us'):,.0f} µs |\n"
        f"| member read, local limiter (Redis away) | {med('read_local_us'):,.0f} µs |\n"
        f"| of which the JWT verification alone | {med('jwt_us'):,.0f} µs |\n"
        f"| forged webhook charged, with Redis | {med('webhook_redis_us'):,.0f} µs |\n"
        f"| forged webhook charged, local limiter | {med('webhook_local_us'):,.0f} µs |\n"
        f"| **over HTTP, one API process, {args.concurrency} clients** | |\n"
        f"| member's read (a 404), limits off: the whole request | "
        f"{med('http_read_off_us'):,.0f} µs |\n"
        f"| … added by the limiter with Redis | {med('http_read_redis_us'):,.0f} µs |\n"
        f"| … added by the local limiter | {med('http_read_local_us'):,.0f} µs |\n"
        f"| forged webhook (401), limits off: the whole request | "
        f"{med('http_webhook_off_us'):,.0f} µs |\n"
        f"| … added by the limiter with Redis (charged) | "
        f"{med('http_webhook_redis_us'):,.0f} µs |\n"
        f"| … added by the local limiter (charged) | {med('http_webhook_local_us'):,.0f} µs |\n"
    )
    summary = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "rounds": rounds,
    }
    publish_results("ratelimit", summary, table, docs=not args.no_docs)


if __name__ == "__main__":
    main()
