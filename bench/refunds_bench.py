"""Refunds benchmark: completed refunds per second, credit note included.

    .venv/bin/python bench/refunds_bench.py [--rounds 3] [--refunds 300] [--concurrency 16]
                                            [--workers 2]

Each round, on the same PostgreSQL and RabbitMQ:
  1. pgbench TPC-B (`-c 16 -j 2 -T 10`, scale 16), the yardstick;
  2. `refunds` ₹300 purchases are bought, credited and invoiced (not timed), then finance
     refunds each in full, `concurrency` requests at a time, and the clock stops when every
     refund is SUCCESS and its credit note is issued with its PDF stored. What one refund costs: the
     API's transaction (payment and wallet locks, refundable computed, hold, outbox), the
     `refund.processing` worker creating it at the sandbox over HTTP with the row locked,
     the sandbox's REFUND_STATUS_WEBHOOK (settling at once) verified and stored, a second
     lookup, the capture and two INR journals, then `invoice.generate` issuing the credit
     note under the series' counter row and drawing and storing its PDF.
Processes: 1 sandbox, 1 API, `workers` workers, all on this machine's cores with the load
generator. Medians over rounds, with per-round ratios to pgbench, go to
bench/results/refunds.json and docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from datetime import UTC, datetime

import httpx
from sqlalchemy import text

from commdesk_billing.config import Settings
from commdesk_billing.db.engine import make_engine
from commdesk_billing.db.migrate import upgrade
from commdesk_billing.security.jwt import Role, issue_token
from commdesk_billing.stack import free_port
from payments_bench import _count, _drop_queues, _env, _purchases, _start
from pgtools import admin_sql, db_url, pgbench_init, pgbench_tps, publish_results, summarise
from runstats import ready, stop

_DONE = """
    SELECT count(*) FROM refunds f JOIN invoices i ON i.refund_id = f.id
     WHERE f.status = 'SUCCESS' AND i.pdf_key IS NOT NULL"""


async def _refund_all(api: str, settings: Settings, ids: list[str], concurrency: int) -> None:
    token = issue_token(settings, sub="rbench-finance", role=Role.finance_admin)
    auth = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=concurrency * 2)
    async with httpx.AsyncClient(base_url=api, timeout=60, limits=limits) as client:
        queue: asyncio.Queue[str] = asyncio.Queue()
        for payment_id in ids:
            queue.put_nowait(payment_id)

        async def clerk() -> None:
            while not queue.empty():
                payment_id = queue.get_nowait()
                r = await client.post(
                    f"/v1/payments/{payment_id}/refunds",
                    json={"reason": "benchmark"},
                    headers={**auth, "Idempotency-Key": f"rb-{payment_id}"},
                )
                if r.status_code != 202:
                    raise RuntimeError(f"refund: {r.status_code} {r.text[:300]}")

        await asyncio.gather(*(clerk() for _ in range(concurrency)))


async def _credited_ids(url: str, tag: str) -> list[str]:
    engine = make_engine(Settings(database_url=url), pool_size=1)
    try:
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    text("""
                    SELECT p.id FROM payments p JOIN users u ON u.id = p.user_id
                     WHERE p.status = 'CREDITED' AND u.external_id LIKE :t
                       AND NOT EXISTS (SELECT 1 FROM refunds f WHERE f.payment_id = p.id)"""),
                    {"t": f"pbench-{tag}-%"},
                )
            ).all()
        return [str(r[0]) for r in rows]
    finally:
        await engine.dispose()


def _wait(url: str, sql: str, target: int, what: str, limit_s: float = 900) -> None:
    started = time.perf_counter()
    while asyncio.run(_count(url, sql)) < target:
        if time.perf_counter() - started > limit_s:
            raise RuntimeError(f"{what}: not done in {limit_s:.0f} s")
        time.sleep(0.1)


def _round(url: str, prefix: str, n: int, concurrency: int, workers: int, docs: str) -> float:
    api, sandbox = f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"
    env = {
        **_env(url, prefix, api, sandbox),
        "BILLING_SANDBOX_REFUND_DELAY_S": "0",
        "BILLING_STORAGE_DIR": docs,
    }
    settings = Settings(database_url=url)
    procs = [
        _start(env, "sandbox", "--port", sandbox.rsplit(":", 1)[1], "--rate-limits", "off"),
        _start(env, "api", "--port", api.rsplit(":", 1)[1]),
        *(_start(env, "worker") for _ in range(workers)),
    ]
    try:
        asyncio.run(ready(f"{sandbox}/_sandbox/health"))
        asyncio.run(ready(f"{api}/readyz"))
        tag = uuid.uuid4().hex[:8]
        credited = "SELECT count(*) FROM payments WHERE status = 'CREDITED'"
        before = asyncio.run(_count(url, credited))
        asyncio.run(_purchases(api, settings, n, 32, tag))
        _wait(url, credited, before + n, "purchases")
        # Their tax invoices and PDFs too: that backlog is the purchases' cost, not ours.
        invoiced = (
            "SELECT count(*) FROM invoices WHERE kind = 'tax_invoice' AND pdf_key IS NOT NULL"
        )
        _wait(url, invoiced, before + n, "tax invoices")
        ids = asyncio.run(_credited_ids(url, tag))
        done_before = asyncio.run(_count(url, _DONE))
        started = time.perf_counter()
        asyncio.run(_refund_all(api, settings, ids, concurrency))
        _wait(url, _DONE, done_before + len(ids), "refunds")
        return len(ids) / (time.perf_counter() - started)
    finally:
        stop(procs)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--refunds", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args()

    tag0 = uuid.uuid4().hex[:8]
    db, pgb = f"cdb_rbench_{tag0}", f"cdb_rpgbench_{tag0}"
    prefix = f"rbench{tag0}."
    asyncio.run(admin_sql(f'CREATE DATABASE "{db}"'))
    asyncio.run(admin_sql(f'CREATE DATABASE "{pgb}"'))
    rounds: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="rbench-docs-") as docs:
        try:
            upgrade(db_url(db))
            pgbench_init(pgb, 16)
            for i in range(args.rounds):
                tps = pgbench_tps(pgb, 16, 10)
                rate = _round(
                    db_url(db), prefix, args.refunds, args.concurrency, args.workers, docs
                )
                rounds.append({"pgbench_tps": tps, "refunds_per_s": rate})
                print(f"round {i + 1}: pgbench {tps:.0f} tps, refunds {rate:.1f}/s", flush=True)
        finally:
            asyncio.run(_drop_queues(prefix))
            asyncio.run(admin_sql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
            asyncio.run(admin_sql(f'DROP DATABASE IF EXISTS "{pgb}" WITH (FORCE)'))

    med, ratio = summarise(rounds)
    command = (
        f".venv/bin/python bench/refunds_bench.py --rounds {args.rounds} --refunds "
        f"{args.refunds} --concurrency {args.concurrency} --workers {args.workers}"
    )
    table = (
        "| measure | median of rounds | median ratio to pgbench (per round) |\n"
        "|---|---:|---:|\n"
        f"| pgbench TPC-B, 16 clients | {med('pgbench_tps'):,.0f} tps | 1.00 |\n"
        f"| completed full refunds (request → Cashfree → capture + journals → credit note "
        f"PDF stored), {args.concurrency} clerks, {args.workers} workers | "
        f"{med('refunds_per_s'):,.1f}/s | {ratio('refunds_per_s'):.3f} |\n"
    )
    summary = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "rounds": rounds,
    }
    publish_results("refunds", summary, table, docs=not args.no_docs)


if __name__ == "__main__":
    main()
