"""Horizontal scale: purchases end to end on one of each vs a scaled-out layout, then a broker
node killed mid-run.

    .venv/bin/python bench/scale_run.py [--purchases 150] [--concurrency 24] [--no-docs]

Layouts, each on a fresh set of processes (and the same scratch database):
  one of each   1 API, 1 worker, PostgreSQL directly, one RabbitMQ node of our own
                (`cdb-d@localhost`);
  scaled        2 API processes behind HAProxy (HTTP, round robin), 3 workers, PgBouncer in
                transaction mode (its own port and ini; migrations, leases and LISTEN keep
                BILLING_DATABASE_DIRECT_URL), a three-node RabbitMQ cluster of our own
                (`bench/rabbit_cluster.py`: `cdb-a|b|c@localhost`, quorum queues replicated on
                all three). The app takes one broker URL (BILLING_RABBITMQ_URL), so it points
                at a TCP frontend of the same HAProxy that spreads connections over the three
                nodes (health-checked every second): a client whose node dies reconnects (its
                robust connection) through the proxy to a live one.
Each layout runs `purchases` purchases with `concurrency` buyers, the driver of
bench/payments_bench.py (order over HTTP → the Cashfree sandbox's hosted checkout → signed
webhook → `payment.processing` → `wallet.credit`), and counts one once its payment is
CREDITED. CPU per purchase is read from /proc (utime + stime of each process and its live
descendants) over the run, per kind of process; PostgreSQL's share is its backends on the
scratch database, sampled every 0.2 s (a backend that exits is counted to its last sample).
A third layout, the scaled one with PostgreSQL directly instead of PgBouncer, tells the
pooler's cost from the extra processes'.
Then the fault round on the scaled layout: once a quarter of the purchases are credited, the
node leading most of the app's queues is killed with SIGKILL, started again a few seconds
later, and the run goes on. Lost and credited-twice are counted as the fault suite counts
them: every purchase paid at the sandbox must have exactly one purchase lot, one bonus lot,
one INR journal and its status CREDITED, and the buyers' wallets must hold exactly 3 200
credits per purchase. Runs as root (the broker nodes run as the `rabbitmq` user; PgBouncer
drops to `postgres`). Never touches the machine's own broker.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.engine import make_url

import rabbit_cluster as rc
from commdesk_billing.config import Settings
from commdesk_billing.db.migrate import upgrade
from commdesk_billing.security.jwt import Role, issue_token
from commdesk_billing.stack import free_port
from payments_bench import _env, _order_and_pay, _start
from pgtools import ROOT, admin_sql, db_url, write_docs_block
from runstats import TICK, Backends, backlog, driver_ticks, fetch, ready, stop, tree_ticks

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
CREDITS_PER_PURCHASE = 3200  # pack_300: 3 000 + a 200 bonus
KINDS = ("api", "worker", "broker", "proxy", "pgbouncer", "sandbox", "postgres", "driver")


# --- the processes -------------------------------------------------------------------------


@dataclass
class Layout:
    name: str
    apis: int
    workers: int
    brokers: list[rc.Node]
    pooled: bool
    procs: dict[str, list[subprocess.Popen[bytes]]] = field(default_factory=dict)
    pids: dict[str, list[int]] = field(default_factory=dict)
    base_url: str = ""
    leaders: dict[str, int] = field(default_factory=dict)


def _pgbouncer(workdir: Path, port: int) -> subprocess.Popen[bytes]:
    """PgBouncer in transaction mode, as the pooled endpoint of Neon works (the ini of
    tests/db/test_pooler.py, with a pool sized for five app processes)."""
    workdir.mkdir(parents=True, exist_ok=True)
    workdir.chmod(0o777)  # pgbouncer refuses to run as root and drops to postgres
    admin = make_url(db_url("postgres"))
    (workdir / "users.txt").write_text(f'"{admin.username or "postgres"}" ""\n')
    (workdir / "pgbouncer.ini").write_text(f"""
[databases]
* = host={admin.host or "127.0.0.1"} port={admin.port or 5432}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {workdir}/users.txt
pool_mode = transaction
default_pool_size = 20
max_client_conn = 500
logfile = {workdir}/pgbouncer.log
pidfile = {workdir}/pgbouncer.pid
""")
    for f in workdir.iterdir():
        f.chmod(0o666)
    cmd = [PGBOUNCER, str(workdir / "pgbouncer.ini")]
    if os.geteuid() == 0:
        cmd[1:1] = ["-u", "postgres"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _haproxy(
    workdir: Path, http_port: int, apis: list[int], amqp_port: int, brokers: list[int]
) -> subprocess.Popen[bytes]:
    workdir.mkdir(parents=True, exist_ok=True)
    api_servers = "\n".join(f"    server api{i} 127.0.0.1:{p} check" for i, p in enumerate(apis))
    broker_servers = "\n".join(
        f"    server rabbit{i} 127.0.0.1:{p} check inter 1s fall 2 rise 2"
        for i, p in enumerate(brokers)
    )
    cfg = workdir / "haproxy.cfg"
    cfg.write_text(f"""
global
    maxconn 4096
    nbthread 1

defaults
    timeout connect 5s
    timeout client 1h
    timeout server 1h
    retries 3
    option redispatch

frontend api
    mode http
    bind 127.0.0.1:{http_port}
    default_backend apis

backend apis
    mode http
    balance roundrobin
{api_servers}

frontend amqp
    mode tcp
    bind 127.0.0.1:{amqp_port}
    default_backend rabbits

backend rabbits
    mode tcp
    balance leastconn
{broker_servers}
""")
    return subprocess.Popen(
        [HAPROXY, "-db", "-f", str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def _wait_port(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    for _ in range(200):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        time.sleep(0.05)
    raise RuntimeError(f"{what} is not listening on {port}")


def _wait_consumers(node: rc.Node, prefix: str, workers: int) -> None:
    """The purchase path's queues declared and consumed by every worker."""
    wanted = {f"{prefix}{q}" for q in ("payment.processing", "wallet.credit")}
    for _ in range(240):
        r = rc.ctl(node, "list_queues", "name", "consumers", "--formatter", "json")
        if r.returncode == 0:
            seen = {q["name"]: q["consumers"] for q in json.loads(r.stdout or "[]")}
            if all(seen.get(q, 0) >= workers for q in wanted):
                return
        time.sleep(0.5)
    raise RuntimeError("workers did not start consuming")


def _start_layout(layout: Layout, db: str, prefix: str, work: Path) -> None:
    direct = db_url(db)
    sandbox = f"http://127.0.0.1:{free_port()}"
    api_ports = [free_port() for _ in range(layout.apis)]
    extra: dict[str, str] = {}
    if layout.apis > 1 or len(layout.brokers) > 1:
        http_port, amqp_port = free_port(), free_port()
        proxy = _haproxy(
            work / "haproxy", http_port, api_ports, amqp_port, [n.amqp_port for n in layout.brokers]
        )
        _wait_port(http_port, proxy, "haproxy")
        layout.procs["proxy"] = [proxy]
        layout.base_url = f"http://127.0.0.1:{http_port}"
        extra["BILLING_RABBITMQ_URL"] = f"amqp://guest:guest@127.0.0.1:{amqp_port}/"
    else:
        layout.base_url = f"http://127.0.0.1:{api_ports[0]}"
        extra["BILLING_RABBITMQ_URL"] = layout.brokers[0].url
    url = direct
    if layout.pooled:
        port = free_port()
        bouncer = _pgbouncer(work / "pgbouncer", port)
        _wait_port(port, bouncer, "pgbouncer")
        layout.procs["pgbouncer"] = [bouncer]
        url = make_url(direct).set(port=port).render_as_string(hide_password=False)
        extra["BILLING_DB_POOLER"] = "transaction"
        extra["BILLING_DATABASE_DIRECT_URL"] = direct
    # Fraud scoring runs (its cost is in the figures) but holds and blocks nothing: its
    # velocity windows in the shared Redis count every layout's orders from 127.0.0.1, so
    # later layouts would otherwise hold more purchases for review than earlier ones.
    extra["BILLING_FRAUD_REVIEW_SCORE"] = "101"
    extra["BILLING_FRAUD_BLOCK_SCORE"] = "101"
    env = {**_env(url, prefix, layout.base_url, sandbox), **extra}
    layout.procs["sandbox"] = [
        _start(env, "sandbox", "--port", sandbox.rsplit(":", 1)[1], "--rate-limits", "off")
    ]
    layout.procs["api"] = [_start(env, "api", "--port", str(p)) for p in api_ports]
    layout.procs["worker"] = [_start(env, "worker") for _ in range(layout.workers)]
    asyncio.run(ready(f"{sandbox}/_sandbox/health"))
    for p in api_ports:
        asyncio.run(ready(f"http://127.0.0.1:{p}/readyz"))
    asyncio.run(ready(f"{layout.base_url}/readyz"))
    _wait_consumers(layout.brokers[0], prefix, layout.workers)
    if len(layout.brokers) > 1:
        r = rc.rebalance(layout.brokers[0])
        if r.returncode != 0:
            raise RuntimeError(f"rebalance: {r.stdout[-300:]} {r.stderr[-300:]}")
        layout.leaders = _leaders(layout.brokers[0], prefix)
    layout.pids = {k: [p.pid for p in v] for k, v in layout.procs.items()}


def _stop_layout(layout: Layout) -> None:
    app = [p for k in ("api", "worker", "sandbox") for p in layout.procs.get(k, [])]
    stop(app)
    stop([p for k in ("proxy", "pgbouncer") for p in layout.procs.get(k, [])])


# --- counting ------------------------------------------------------------------------------


def _credited(db: str, since: datetime) -> int:
    rows = asyncio.run(
        fetch(
            db,
            "SELECT count(*) FROM payments WHERE status = 'CREDITED' AND created_at >= $1",
            since,
        )
    )
    return int(rows[0][0])


@dataclass
class Tally:
    paid: int  # checkouts the sandbox answered with success
    opened: int
    credited: int
    exactly_once: int
    lost: int
    twice: int


def _tally(db: str, since: datetime, paid: int) -> Tally:
    """The fault suite's counter: a paid purchase is credited exactly once when its payment is
    CREDITED with one purchase lot, one bonus lot and one INR journal; the buyers' wallets
    must hold 3 200 credits per such purchase."""
    rows = asyncio.run(
        fetch(
            db,
            """
            WITH p AS (SELECT id, status, wallet_id FROM payments WHERE created_at >= $1)
            SELECT p.id, p.status,
                   (SELECT count(*) FROM credit_lots l
                     WHERE l.source_ref = p.id::text AND l.source = 'purchase') AS purchase_lots,
                   (SELECT count(*) FROM credit_lots l
                     WHERE l.source_ref = p.id::text AND l.source = 'bonus') AS bonus_lots,
                   (SELECT count(*) FROM ledger_journals j
                     WHERE j.idempotency_key = 'payment:' || p.id || ':inr') AS journals
              FROM p""",
            since,
        )
    )
    wallets = asyncio.run(
        fetch(
            db,
            """SELECT coalesce(sum(available_credits + locked_credits), 0) FROM wallets
                WHERE id IN (SELECT wallet_id FROM payments WHERE created_at >= $1)""",
            since,
        )
    )
    once = sum(
        1
        for r in rows
        if r["status"] == "CREDITED"
        and (r["purchase_lots"], r["bonus_lots"], r["journals"]) == (1, 1, 1)
    )
    extra_grants = sum(
        max(0, r["purchase_lots"] - 1) + max(0, r["bonus_lots"] - 1) + max(0, r["journals"] - 1)
        for r in rows
    )
    held = int(wallets[0][0])
    surplus = max(0, held - CREDITS_PER_PURCHASE * once)
    return Tally(
        paid=paid,
        opened=len(rows),
        credited=sum(1 for r in rows if r["status"] == "CREDITED"),
        exactly_once=once,
        lost=max(0, paid - once),
        twice=extra_grants + -(-surplus // CREDITS_PER_PURCHASE),
    )


# --- a run ---------------------------------------------------------------------------------


@dataclass
class Fault:
    node: rc.Node
    at_share: float = 0.25
    down_s: float = 5.0
    led: str = ""
    killed_at_credited: int = 0
    back_after_s: float = 0.0


def _leaders(node: rc.Node, prefix: str) -> dict[str, int]:
    r = rc.ctl(node, "list_queues", "name", "leader", "members", "--formatter", "json")
    counts: dict[str, int] = {}
    for q in json.loads(r.stdout or "[]"):
        if q["name"].startswith(prefix):
            counts[str(q["leader"])] = counts.get(str(q["leader"]), 0) + 1
    return counts


def _members(node: rc.Node, prefix: str) -> set[int]:
    r = rc.ctl(node, "list_queues", "name", "members", "--formatter", "json")
    return {len(q["members"]) for q in json.loads(r.stdout or "[]") if q["name"].startswith(prefix)}


async def _purchases(api: str, n: int, concurrency: int, tag: str) -> int:
    """payments_bench's buyers, with one difference: a request the proxy or a loaded server
    drops without an answer is sent again, as a client would (the order with its same
    Idempotency-Key; a checkout sent again for a session already paid is refused, which stops
    the run). Returns how many requests were sent again."""
    settings = Settings()
    tokens = [
        issue_token(settings, sub=f"scale-{tag}-{i}", role=Role.member) for i in range(concurrency)
    ]
    retries = 0
    limits = httpx.Limits(max_connections=concurrency * 2)
    async with httpx.AsyncClient(base_url=api, timeout=60, limits=limits) as client:
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(n):
            queue.put_nowait(i)

        async def send(method: str, url: str, **kw: Any) -> httpx.Response:
            nonlocal retries
            for attempt in range(4):
                try:
                    return await client.request(method, url, **kw)
                except httpx.TransportError:
                    if attempt == 3:
                        raise
                    retries += 1
                    await asyncio.sleep(0.5)
            raise AssertionError("unreachable")

        async def buyer(b: int) -> None:
            auth = {"Authorization": f"Bearer {tokens[b]}"}
            while not queue.empty():
                i = queue.get_nowait()
                await _order_and_pay(send, {**auth, "Idempotency-Key": f"{tag}-{i}"})

        await asyncio.gather(*(buyer(b) for b in range(concurrency)))
    return retries


@dataclass
class Drive:
    credited_s: float  # until every purchase was CREDITED
    drained_s: float  # until the follow-up work (invoices, analytics, fraud, …) was done too
    retries: int
    dead_letters: int


async def _drive(
    layout: Layout, db: str, prefix: str, n: int, concurrency: int, fault: Fault | None
) -> Drive:
    """Buy n, wait until all are credited (or 300 s after the last checkout), then until the
    outbox and the queues are empty (twice, a second apart; at most 300 s more)."""
    since = datetime.now(UTC)
    tag = uuid.uuid4().hex[:8]
    started = time.perf_counter()
    buying = asyncio.create_task(_purchases(layout.base_url, n, concurrency, tag))

    async def credited() -> int:
        return await asyncio.to_thread(_credited, db, since)

    if fault is not None:
        while await credited() < n * fault.at_share:
            if buying.done():
                break
            await asyncio.sleep(0.2)
        fault.killed_at_credited = await credited()
        killed = time.perf_counter()
        await asyncio.to_thread(rc.kill_node, fault.node)
        print(f"  killed {fault.node.name} at {fault.killed_at_credited} credited", flush=True)
        await asyncio.sleep(fault.down_s)
        await asyncio.to_thread(rc.start_node, fault.node)
        await asyncio.to_thread(rc.wait_node, fault.node)
        fault.back_after_s = time.perf_counter() - killed
        print(f"  {fault.node.name} running again after {fault.back_after_s:.1f} s", flush=True)
    retries = await buying
    last_checkout = time.perf_counter()
    while (done := await credited()) < n:
        if time.perf_counter() - last_checkout > 300:
            print(f"  only {done} of {n} credited 300 s after the last checkout", flush=True)
            break
        await asyncio.sleep(0.1)
    credited_s = time.perf_counter() - started
    broker = layout.brokers[0].url
    quiet = 0
    dead = 0
    deadline = time.perf_counter() + 300
    while quiet < 2 and time.perf_counter() < deadline:
        waiting, dead = await backlog(db, broker, prefix)
        quiet = quiet + 1 if waiting == 0 else 0
        await asyncio.sleep(1)
    if quiet < 2:
        print("  the follow-up work did not drain in 300 s", flush=True)
    return Drive(credited_s, time.perf_counter() - started - 1, retries, dead)


def _run(
    layout: Layout, db: str, prefix: str, work: Path, n: int, concurrency: int, fault: Fault | None
) -> dict[str, Any]:
    load = os.getloadavg()[0]
    try:
        _start_layout(layout, db, prefix, work)
        broker_pids = [p for node in layout.brokers if (p := rc.pid(node)) is not None]
        roots = {**layout.pids, "broker": broker_pids}
        before = {k: tree_ticks(v) for k, v in roots.items()}
        backends = Backends(db)
        backends.start()
        driver_before = driver_ticks()
        since = datetime.now(UTC)
        if fault is not None:
            led = layout.leaders
            fault.node = max(layout.brokers, key=lambda b: led.get(b.name, 0))
            fault.led = f"{led.get(fault.node.name, 0)} of {sum(led.values())}"
        drive = asyncio.run(_drive(layout, db, prefix, n, concurrency, fault))
        after = {k: tree_ticks(v) for k, v in roots.items()}
        cpu = {k: (after[k] - before[k]) for k in roots}
        if fault is not None:
            cpu.pop("broker")  # the killed node's process is not the one measured at the start
        cpu["postgres"] = backends.ticks()
        cpu["driver"] = driver_ticks() - driver_before
        tally = _tally(db, since, n)
        replicas = sorted(_members(layout.brokers[0], prefix))
    finally:
        _stop_layout(layout)
    ms = {k: v * 1000 / TICK / n for k, v in cpu.items()}
    return {
        "layout": layout.name,
        "load_1min": load,
        "purchases": n,
        "seconds": drive.credited_s,
        "per_s": tally.exactly_once / drive.credited_s,
        "drained_s": drive.drained_s,
        "request_retries": drive.retries,
        "dead_letters": drive.dead_letters,
        "cpu_ms_per_purchase": ms,
        "tally": tally.__dict__,
        "replicas_per_queue": replicas,
        "leaders": layout.leaders,
        **(
            {
                "fault": {
                    "node": fault.node.name,
                    "led_queues": fault.led,
                    "killed_at_credited": fault.killed_at_credited,
                    "down_s": fault.down_s,
                    "back_after_s": round(fault.back_after_s, 1),
                }
            }
            if fault
            else {}
        ),
    }


def _row(r: dict[str, Any]) -> str:
    ms = r["cpu_ms_per_purchase"]
    cells = " | ".join(f"{ms[k]:.0f}" if k in ms else "—" for k in KINDS)
    total = sum(ms.values())
    return (
        f"| {r['layout']} | {r['load_1min']:.1f} | {r['purchases']} | {r['seconds']:.1f} | "
        f"{r['drained_s']:.1f} | {r['per_s']:.1f} | {cells} | {total:.0f} | "
        f"{total * r['purchases'] / r['drained_s'] / 1000:.2f} | {r['request_retries']} | "
        f"{r['dead_letters']} |\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--purchases", type=int, default=150)
    parser.add_argument("--concurrency", type=int, default=24)
    parser.add_argument("--down-s", type=float, default=5.0)
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: the broker nodes run as the rabbitmq user")
    for tool, package in ((HAPROXY, "haproxy"), (PGBOUNCER, "pgbouncer")):
        if not os.access(tool, os.X_OK):
            raise SystemExit(f"{package} is not installed: apt-get install -y {package}")

    tag = uuid.uuid4().hex[:8]
    db, prefix = f"cdb_scale_{tag}", f"scale{tag}"
    work = Path(tempfile.mkdtemp(prefix="cdb-scale-"))
    work.chmod(0o755)
    asyncio.run(admin_sql(f'CREATE DATABASE "{db}"'))
    solo_dir, cluster_dir = work / "solo", work / "cluster"
    results: list[dict[str, Any]] = []
    try:
        upgrade(db_url(db))
        solo = rc.start(solo_dir, 1, port=5811, dist_port=25811, first=3)
        try:
            one = Layout("one of each", apis=1, workers=1, brokers=solo, pooled=False)
            results.append(
                _run(one, db, f"{prefix}0.", work, args.purchases, args.concurrency, None)
            )
            print(json.dumps(results[-1]), flush=True)
        finally:
            rc.stop(solo_dir, 1, port=5811, dist_port=25811, first=3)
        cluster = rc.start(cluster_dir, 3)
        try:
            for i, (layout, fault) in enumerate(
                (
                    (Layout("scaled", 2, 3, cluster, pooled=True), None),
                    (Layout("scaled, PostgreSQL direct", 2, 3, cluster, pooled=False), None),
                    (
                        Layout("scaled, a node killed", 2, 3, cluster, pooled=True),
                        Fault(node=cluster[0], down_s=args.down_s),
                    ),
                ),
                start=1,
            ):
                results.append(
                    _run(layout, db, f"{prefix}{i}.", work, args.purchases, args.concurrency, fault)
                )
                print(json.dumps(results[-1]), flush=True)
        finally:
            rc.stop(cluster_dir, 3)
    finally:
        asyncio.run(admin_sql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
        shutil.rmtree(work, ignore_errors=True)

    command = (
        f".venv/bin/python bench/scale_run.py --purchases {args.purchases} "
        f"--concurrency {args.concurrency} --down-s {args.down_s:g}"
    )
    one_r, scaled_r, _, fault_r = results
    speedup = scaled_r["per_s"] / one_r["per_s"]
    table = (
        "| layout | load (1 min) at start | purchases | s to credited | s to drained | "
        "credited/s | "
        + " | ".join(KINDS)
        + " | total CPU ms | cores busy | requests sent again | dead letters |\n"
        "|---|---:|---:|---:|---:|---:|"
        + "---:|" * (len(KINDS) + 4)
        + "\n"
        + "".join(_row(r) for r in results)
    )
    f = fault_r["fault"]
    t = fault_r["tally"]
    fault_table = (
        "| node killed | queues it led | killed at | down, then running again after | "
        "paid at the sandbox | credited | exactly once | lost | credited twice |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|---:|\n"
        f"| {f['node']} | {f['led_queues']} | {f['killed_at_credited']} credited | "
        f"{f['down_s']:g} s, {f['back_after_s']:.1f} s | {t['paid']} | {t['credited']} | "
        f"{t['exactly_once']} | {t['lost']} | {t['twice']} |\n"
    )
    print()
    print(table)
    print(f"scaled / one of each: {speedup:.2f}x credited/s")
    print(fault_table)
    summary = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "results": results,
    }
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "scale.json").write_text(json.dumps(summary, indent=2))
    if not args.no_docs:
        replicas = ", ".join(str(x) for x in scaled_r["replicas_per_queue"])
        leaders = ", ".join(f"{k} {v}" for k, v in sorted(scaled_r["leaders"].items()))
        write_docs_block(
            "scale-run",
            f"Last run {summary['when']} on {os.cpu_count()} cores, {args.purchases} purchases "
            f"per layout, {args.concurrency} buyers:\n\n    {command}\n\n{table}\n"
            f"s to credited: until every purchase was CREDITED (credited/s is over this); s to "
            f"drained: until the follow-up work each purchase queues (tax invoice, analytics, "
            f"fraud scoring of the payment, notifications) was done as well. CPU columns: "
            f"milliseconds of CPU per purchase over the whole run to drained, by kind of "
            f"process (broker: all its nodes; postgres: the scratch database's backends; "
            f"driver: the load generator); cores busy: that CPU over the time to drained. "
            f"Scaled / one of each: {speedup:.2f}x purchases per second. Replicas per quorum "
            f"queue in the cluster: {replicas}; queue leaders after rebalancing: "
            f"{leaders}.\n\n{fault_table}",
        )


if __name__ == "__main__":
    main()
