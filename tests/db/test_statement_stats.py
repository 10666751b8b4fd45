"""The benchmarks' statement counts (`db/statement_stats.py`), in a process of their own: the
counts are process-wide once switched on, so the test's own process is left alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from commdesk_billing.config import Settings

SCRIPT = textwrap.dedent("""
    import asyncio, os, signal, time
    from sqlalchemy import text
    from commdesk_billing.config import Settings
    from commdesk_billing.db.engine import in_transaction, make_engine, on_driver

    async def main() -> None:
        engine = make_engine(Settings(database_url=os.environ["URL"]), pool_size=1)

        async def work(conn):
            await conn.execute(text("SELECT 1"))
            await conn.execute(text("WITH x AS (SELECT 2) SELECT * FROM x"))

        await in_transaction(engine, work)
        await on_driver(engine, lambda driver: driver.fetchval("SELECT $1::int", 3))
        await asyncio.sleep(0.05)  # the driver's query logger reports on the next tick
        os.kill(os.getpid(), signal.SIGUSR1)
        await engine.dispose()

    asyncio.run(main())
""")


def test_counts_statements_transactions_and_driver_statements(
    settings: Settings, tmp_path: Path
) -> None:
    env = {**os.environ, "URL": settings.database_url}
    env["BILLING_DB_STATEMENT_STATS_DIR"] = str(tmp_path)
    subprocess.run([sys.executable, "-c", SCRIPT], env=env, check=True, timeout=120)
    (written,) = tmp_path.glob("*.json")
    counts = json.loads(written.read_text())
    kinds = counts["kinds"]
    assert kinds["select"] == 1
    assert kinds["with"] == 1
    assert kinds["begin"] == 1
    assert kinds["commit"] == 1
    assert kinds["driver_select"] == 1
    assert kinds["connect"] == 1
    assert counts["texts"]["SELECT $1::int"] == 1
    assert counts["texts"]["WITH x AS (SELECT 2) SELECT * FROM x"] == 1


def test_off_without_its_variable(settings: Settings, tmp_path: Path) -> None:
    env = {**os.environ, "URL": settings.database_url}
    env.pop("BILLING_DB_STATEMENT_STATS_DIR", None)
    # SIGUSR1 with nothing listening would end the process: it must not be sent here.
    script = SCRIPT.replace("os.kill(os.getpid(), signal.SIGUSR1)", "pass")
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=120)
    assert list(tmp_path.iterdir()) == []
