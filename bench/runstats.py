"""What the end-to-end benchmarks measure around a run: CPU by process from /proc, the
scratch database's backends, and whether the follow-up work has drained; and what they share
to start one: the app's processes (ready, stopped, rate limits out of the way), funded wallets
and latency percentiles.

Shared by the benchmarks in bench/ (the scratch databases themselves are pgtools').
"""

from __future__ import annotations

import asyncio
import os
import resource
import statistics
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
import httpx
from sqlalchemy.engine import make_url

from commdesk_billing import wiring
from commdesk_billing.config import Settings
from commdesk_billing.db.engine import in_transaction, make_engine
from commdesk_billing.modules.wallet import service as ws
from commdesk_billing.modules.wallet.model import LotSource
from commdesk_billing.queues.topology import QUEUES, Names
from pgtools import db_url

# Grants announce through the deployment's routes, as in every process (wiring.install).
wiring.install()

TICK = os.sysconf("SC_CLK_TCK")


# --- CPU from /proc ------------------------------------------------------------------------


def stat(pid: int) -> tuple[int, int] | None:
    """(ppid, utime + stime in ticks) of a live process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # After the command name: ppid is field 4, utime 14 and stime 15 (1-based, man 5 proc).
    return int(fields[1]), int(fields[11]) + int(fields[12])


def cpu_s(pid: int) -> float:
    """User + system CPU seconds a live process has used so far."""
    s = stat(pid)
    if s is None:
        raise ProcessLookupError(pid)
    return s[1] / TICK


def tree_ticks(roots: list[int]) -> int:
    """CPU ticks of the processes and all their live descendants."""
    parent: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (s := stat(int(entry))) is not None:
            parent[int(entry)], ticks[int(entry)] = s
    total = 0
    for pid, t in ticks.items():
        p = pid
        while p > 1:
            if p in roots:
                total += t
                break
            p = parent.get(p, 0)
    return total


def driver_ticks() -> int:
    """This whole process's CPU ticks (the load generator and whatever else runs here)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return round((r.ru_utime + r.ru_stime) * TICK)


class Backends(threading.Thread):
    """CPU of the database's backends, sampled from /proc every 0.2 s (their process title
    names the database), so a backend that exits during the run is counted up to its last
    sample, not missed. After the first full scan only the postmaster's children are read
    (`/proc/<pid>/task/<pid>/children`), which keeps the sampler cheap; its own CPU is kept
    (`own_s`) so that a caller measuring this process can leave it out. `exclude`: backends
    of the benchmark's own connections."""

    def __init__(self, db: str, exclude: set[int] | None = None) -> None:
        super().__init__(daemon=True)
        self.marker = f" {db} ".encode()
        self.exclude = exclude or set()
        self.first: dict[int, int] = {}
        self.last: dict[int, int] = {}
        self.own_s = 0.0
        self.postmaster: int | None = None
        self.stopping = threading.Event()

    def _candidates(self) -> list[str]:
        if self.postmaster is not None:
            path = Path(f"/proc/{self.postmaster}/task/{self.postmaster}/children")
            try:
                return path.read_text().split()
            except OSError:
                self.postmaster = None
        return [e for e in os.listdir("/proc") if e.isdigit()]

    def _sample(self) -> dict[int, int]:
        seen: dict[int, int] = {}
        for entry in self._candidates():
            pid = int(entry)
            if pid in self.exclude:
                continue
            try:
                title = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            is_ours = title.startswith(b"postgres: ") and self.marker in title
            if is_ours and (s := stat(pid)) is not None:
                seen[pid] = s[1]
                if self.postmaster is None:
                    self.postmaster = s[0]
        return seen

    def run(self) -> None:
        started = time.thread_time()
        self.first = self._sample()
        while not self.stopping.wait(0.2):
            self.last.update(self._sample())
        self.last.update(self._sample())
        self.own_s = time.thread_time() - started

    def ticks(self) -> int:
        self.stopping.set()
        self.join()
        return sum(t - self.first.get(p, 0) for p, t in self.last.items())


def percentile(values: list[float], q: int) -> float:
    """The q-th percentile (1..99)."""
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


# --- the app's processes -------------------------------------------------------------------


def unrefused_rate_limits() -> dict[str, str]:
    """Settings that leave every rate limit running (its cost is in the figures) but far above
    any run's load, which comes from one address as a few callers."""
    return {
        f"BILLING_RATE_LIMIT_{c}_{w}{b}": "1000000"
        for c in ("ORDERS", "MONEY", "READS")
        for w in ("USER", "IP")
        for b in ("", "_BURST")
    }


async def ready(url: str, within_s: float = 240, timeout_s: float = 5) -> None:
    """Until `url` answers 200: generous, as on a loaded 2-core machine the app's processes
    take a while to import and start."""
    deadline = time.monotonic() + within_s
    async with httpx.AsyncClient(timeout=timeout_s) as client:
        while time.monotonic() < deadline:
            try:
                if (await client.get(url)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError(f"{url} not ready in {within_s:.0f} s")


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM to each, then a minute for each to finish its shutdown before it is killed."""
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()


async def fund_wallets(url: str, subs: list[str], credits: int, key_prefix: str) -> list[uuid.UUID]:
    """A user wallet for each of `subs` (in that order), each granted one promotional lot of
    `credits` under the key `<key_prefix>:<wallet id>`; made 100 at a time."""
    engine = make_engine(Settings(database_url=url), pool_size=8)
    try:

        async def make(sub: str) -> uuid.UUID:
            w = await in_transaction(engine, lambda c: ws.get_or_create_user_wallet(c, sub))
            await in_transaction(
                engine,
                lambda c: ws.grant_credits(
                    c,
                    wallet_id=w.id,
                    credits=credits,
                    source=LotSource.promotional,
                    idempotency_key=f"{key_prefix}:{w.id}",
                    reason="bench funding",
                ),
            )
            return w.id

        ids: list[uuid.UUID] = []
        for start in range(0, len(subs), 100):
            ids += await asyncio.gather(*(make(sub) for sub in subs[start : start + 100]))
        return ids
    finally:
        await engine.dispose()


# --- the database and the broker -----------------------------------------------------------


def dsn(db: str) -> str:
    return make_url(db_url(db)).set(drivername="postgresql").render_as_string(hide_password=False)


async def fetch(db: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn(db))
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def backlog(db: str, broker_url: str, prefix: str) -> tuple[int, int]:
    """(outbox rows not yet relayed + messages waiting in the work and retry queues,
    messages in the dead-letter queues)."""
    rows = await fetch(db, "SELECT count(*) FROM outbox WHERE sent_at IS NULL")
    names = Names(prefix, len(Settings().retry_delays_s))
    waiting = dead = 0
    connection = await aio_pika.connect(broker_url)
    async with connection:
        channel = await connection.channel()
        for q in QUEUES:
            for name, dlq in ((names.work(q), False), (names.dlq(q), True)):
                declared = await channel.declare_queue(name, passive=True)
                count = declared.declaration_result.message_count or 0
                if dlq:
                    dead += count
                else:
                    waiting += count
        for name in names.tiers_all():
            declared = await channel.declare_queue(name, passive=True)
            waiting += declared.declaration_result.message_count or 0
    return int(rows[0][0]) + waiting, dead


async def wait_drained(
    db: str, broker_url: str, prefix: str, within_s: float = 300
) -> tuple[bool, int]:
    """Until the outbox and the queues are empty (twice, a second apart, as a message being
    handled is not counted as waiting): (drained, dead letters)."""
    quiet = dead = 0
    deadline = time.perf_counter() + within_s
    while quiet < 2 and time.perf_counter() < deadline:
        waiting, dead = await backlog(db, broker_url, prefix)
        quiet = quiet + 1 if waiting == 0 else 0
        if quiet < 2:
            await asyncio.sleep(1)
    return quiet >= 2, dead
