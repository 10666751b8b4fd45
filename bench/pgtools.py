"""What every benchmark shares: scratch databases, pgbench, and docs/benchmarks.md blocks."""

from __future__ import annotations

import asyncio
import json
import os
import re
import statistics
import subprocess
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
ADMIN = os.environ.get("BILLING_TEST_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def db_url(db: str) -> str:
    return make_url(ADMIN).set(database=db).render_as_string(hide_password=False)


def libpq_args(db: str) -> list[str]:
    u = make_url(ADMIN)
    return [
        "-h",
        u.host or "127.0.0.1",
        "-p",
        str(u.port or 5432),
        "-U",
        u.username or "postgres",
        db,
    ]


async def admin_sql(sql: str) -> None:
    dsn = make_url(ADMIN).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextmanager
def scratch_databases(*prefixes: str) -> Iterator[tuple[str, ...]]:
    """A database `<prefix>_<tag>` for each prefix (one tag a run), dropped after the run even
    when it fails."""
    tag = uuid.uuid4().hex[:8]
    names = tuple(f"{prefix}_{tag}" for prefix in prefixes)
    try:
        for name in names:
            asyncio.run(admin_sql(f'CREATE DATABASE "{name}"'))
        yield names
    finally:
        for name in names:
            asyncio.run(admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def pgbench_init(db: str, scale: int) -> None:
    subprocess.run(
        ["pgbench", "-i", "-q", "-s", str(scale), *libpq_args(db)], check=True, capture_output=True
    )


def pgbench_tps(db: str, clients: int, seconds: int) -> float:
    """TPC-B, the classic bank transaction: tps without connection set-up."""
    out = subprocess.run(
        ["pgbench", "-n", "-c", str(clients), "-j", "2", "-T", str(seconds), *libpq_args(db)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    match = re.search(r"tps = ([\d.]+) \((?:without initial connection time|excluding)", out)
    if not match:
        raise RuntimeError(f"could not read pgbench output:\n{out}")
    return float(match.group(1))


def write_docs_block(name: str, block: str) -> None:
    """Replace (or append) the `<!-- name:begin -->…<!-- name:end -->` block."""
    doc = ROOT / "docs" / "benchmarks.md"
    text = doc.read_text() if doc.exists() else "# Benchmarks\n"
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    full = f"{begin}\n{block}{end}"
    if begin in text:
        text = re.sub(f"{re.escape(begin)}.*?{re.escape(end)}", lambda _: full, text, flags=re.S)
    else:
        text += f"\n{full}\n"
    doc.write_text(text)


def publish_results(
    name: str, summary: dict[str, Any], table: str, *, docs: bool, scope: str = ""
) -> None:
    """Print the table, keep the run as bench/results/<name>.json and, with `docs`, put the
    table and the command that made it into docs/benchmarks.md (`scope` qualifies the run)."""
    print()
    print(table)
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(summary, indent=2))
    if docs:
        write_docs_block(
            f"{name}-bench",
            f"Last run {summary['when']} on {os.cpu_count()} cores{scope}:\n\n"
            f"    {summary['command']}\n\n{table}",
        )


def summarise(
    rounds: list[dict[str, float]],
) -> tuple[Callable[[str], float], Callable[[str], float]]:
    """`med(key)`: the median of a measure over rounds; `ratio(key)`: the median of its
    per-round ratio to that round's pgbench tps (the machine's load changes between rounds)."""

    def med(key: str) -> float:
        return float(statistics.median(r[key] for r in rounds))

    def ratio(key: str) -> float:
        return float(statistics.median(r[key] / r["pgbench_tps"] for r in rounds))

    return med, ratio
