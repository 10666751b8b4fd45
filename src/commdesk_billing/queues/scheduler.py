"""The scheduler: periodic jobs, run by exactly one process at a time.

Leadership is a PostgreSQL session advisory lock held on a dedicated connection over the
direct (non-pooled) URL: a transaction-mode pooler would hand the session to someone else.
If that connection dies, PostgreSQL releases the lock and another scheduler takes over; the
old leader notices on its next heartbeat and stops running jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import asyncpg
import structlog
from opentelemetry import trace
from opentelemetry.trace import StatusCode
from sqlalchemy.engine import make_url

from commdesk_billing.config import Settings
from commdesk_billing.db.urls import behind_pooler
from commdesk_billing.telemetry import errors, tracing
from commdesk_billing.telemetry.metrics import SCHEDULER_JOB_RUNS, SCHEDULER_LEADER

log = structlog.get_logger(__name__)

LEADER_LOCK = 0x5C4ED01E


@dataclass
class Job:
    name: str
    every_s: float
    run: Callable[[], Awaitable[object]]
    last_run: float = field(default=float("-inf"))


def _libpq(url: str) -> str:
    """asyncpg.connect takes libpq URLs; sslmode etc. are understood natively there."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class Scheduler:
    def __init__(
        self, settings: Settings, jobs: list[Job], *, tick_s: float = 1.0, heartbeat_s: float = 5.0
    ) -> None:
        self.settings = settings
        self.jobs = jobs
        self.tick_s = tick_s
        self.heartbeat_s = heartbeat_s
        self.is_leader = False
        self._lock_conn: asyncpg.Connection | None = None
        errors.init(settings, "scheduler")
        self.tracer = tracing.tracer(settings, "scheduler")
        pooled = settings.pooled
        if pooled is None:
            pooled = behind_pooler(settings.database_url)
        if settings.database_direct_url is None and pooled:
            # Behind a transaction-mode pooler a session lock lands on a shared server
            # connection, where another scheduler could "take" it too.
            raise ValueError(
                "the scheduler needs BILLING_DATABASE_DIRECT_URL (a non-pooled connection) "
                "for its leader lease"
            )

    async def _try_lead(self) -> bool:
        try:
            if self._lock_conn is None or self._lock_conn.is_closed():
                self._lock_conn = await asyncpg.connect(
                    _libpq(self.settings.direct_url),
                    timeout=10,
                    # A half-open connection must not keep the lease for hours.
                    server_settings={
                        "tcp_keepalives_idle": "10",
                        "tcp_keepalives_interval": "5",
                        "tcp_keepalives_count": "3",
                    },
                )
            got = await self._lock_conn.fetchval(
                "SELECT pg_try_advisory_lock($1)", LEADER_LOCK, timeout=10
            )
        except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
            log.warning("scheduler.lease.error", error=str(exc)[:200])
            self._drop_connection()
            return False
        return bool(got)

    async def _still_leader(self) -> bool:
        """The lease is ours only if our own session holds the lock right now."""
        try:
            assert self._lock_conn is not None
            held = await self._lock_conn.fetchval(
                """SELECT EXISTS (SELECT 1 FROM pg_locks
                    WHERE locktype = 'advisory' AND granted AND pid = pg_backend_pid()
                      AND ((classid::bigint << 32) | objid::bigint) = $1 AND objsubid = 1)""",
                LEADER_LOCK,
                timeout=5,
            )
        except Exception as exc:  # any failure: the session, and with it the lock, is gone
            log.error("scheduler.lease.lost", error=str(exc)[:200])
            self._drop_connection()
            return False
        if not held:
            log.error("scheduler.lease.lost", error="lock not held by this session")
            self._drop_connection()
        return bool(held)

    def _drop_connection(self) -> None:
        # terminate(), not close(): the connection may be wedged, and until it is really
        # gone the server keeps the lock.
        if self._lock_conn is not None:
            self._lock_conn.terminate()
        self._lock_conn = None

    async def run(self, stop: asyncio.Event) -> None:
        last_beat = time.monotonic()
        try:
            while not stop.is_set():
                if not self.is_leader:
                    self.is_leader = await self._try_lead()
                    SCHEDULER_LEADER.set(1 if self.is_leader else 0)
                    if self.is_leader:
                        log.info("scheduler.lease.acquired")
                elif time.monotonic() - last_beat >= self.heartbeat_s:
                    last_beat = time.monotonic()
                    self.is_leader = await self._still_leader()
                    SCHEDULER_LEADER.set(1 if self.is_leader else 0)
                if self.is_leader:
                    await self._run_due(stop)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self.tick_s)
        finally:
            await self.release()

    async def _run_due(self, stop: asyncio.Event) -> None:
        for job in self.jobs:
            if stop.is_set() or time.monotonic() - job.last_run < job.every_s:
                continue
            # Re-check the lease right before each job: it may have gone since the last beat.
            if not await self._still_leader():
                self.is_leader = False
                SCHEDULER_LEADER.set(0)
                return
            job.last_run = time.monotonic()
            # Each run its own trace (tracing on): what a job announces carries it on.
            span = (
                self.tracer.start_as_current_span(f"scheduler.job {job.name}")
                if self.tracer is not None
                else contextlib.nullcontext()
            )
            with span:
                await self._run_job(job)

    async def _run_job(self, job: Job) -> None:
        try:
            result = await job.run()
            SCHEDULER_JOB_RUNS.labels(job.name, "ok").inc()
            log.info("scheduler.job.done", job=job.name, result=str(result)[:200])
        except Exception as exc:  # one failing job must not stop the others
            SCHEDULER_JOB_RUNS.labels(job.name, "error").inc()
            log.error("scheduler.job.failed", job=job.name, error=str(exc)[:300])
            span = trace.get_current_span()
            span.record_exception(exc)
            span.set_status(StatusCode.ERROR)
            errors.capture(exc)

    async def release(self) -> None:
        if self._lock_conn is not None and not self._lock_conn.is_closed():
            with contextlib.suppress(Exception):
                await self._lock_conn.execute("SELECT pg_advisory_unlock_all()")
                await self._lock_conn.close()
        self._lock_conn = None
        self.is_leader = False
        SCHEDULER_LEADER.set(0)
