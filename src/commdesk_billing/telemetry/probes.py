"""Figures the scheduler reads from the dependencies themselves (its `metrics_snapshot`
job): PostgreSQL's connections in use against its limit, RabbitMQ's queue depths and
consumers, and whether PostgreSQL, Redis and RabbitMQ answered at all. Each probe is bounded
by a timeout and reports a dependency it could not reach as down (0), never raises: the
other figures are still read."""

from __future__ import annotations

import asyncio

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from commdesk_billing.config import Settings
from commdesk_billing.db.sql import sql
from commdesk_billing.kv.store import RedisStore
from commdesk_billing.queues import admin
from commdesk_billing.telemetry.metrics import (
    DEPENDENCY_UP,
    POSTGRES_CONNECTIONS,
    POSTGRES_MAX_CONNECTIONS,
    QUEUE_CONSUMERS,
    QUEUE_DEPTH,
)

log = structlog.get_logger(__name__)

PROBE_TIMEOUT_S = 5.0


async def postgres(engine: AsyncEngine) -> bool:
    """Client connections open on the server (every database: they share the limit) and the
    limit ordinary roles have (max_connections less the superusers' and replication's)."""
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            async with engine.connect() as conn:
                row = (
                    await conn.execute(
                        sql("""
                        SELECT (SELECT count(*) FROM pg_stat_activity
                                 WHERE backend_type = 'client backend') AS used,
                               current_setting('max_connections')::int
                             - current_setting('superuser_reserved_connections')::int
                             - coalesce(current_setting('reserved_connections', true), '0')::int
                               AS usable""")
                    )
                ).one()
    except Exception as exc:  # any failure is "down"; the reason goes to the log
        log.warning("metrics.probe.failed", dependency="postgresql", error=type(exc).__name__)
        DEPENDENCY_UP.labels("postgresql").set(0)
        return False
    POSTGRES_CONNECTIONS.set(int(row.used))
    POSTGRES_MAX_CONNECTIONS.set(int(row.usable))
    DEPENDENCY_UP.labels("postgresql").set(1)
    return True


async def redis(store: RedisStore) -> bool:
    up = await store.ping()  # bounded by the store's own socket timeouts
    DEPENDENCY_UP.labels("redis").set(1 if up else 0)
    return up


async def rabbitmq(settings: Settings) -> bool:
    """Passive declares of every work queue and its dead-letter queue (`queues/admin.py`)."""
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            rows, _tiers = await admin.broker_status(settings)
    except Exception as exc:  # any failure is "down"; the reason goes to the log
        log.warning("metrics.probe.failed", dependency="rabbitmq", error=type(exc).__name__)
        DEPENDENCY_UP.labels("rabbitmq").set(0)
        return False
    for row in rows:
        if row.ready < 0:  # not declared yet (no worker has started): nothing to say
            continue
        QUEUE_DEPTH.labels(row.queue, "work").set(row.ready)
        QUEUE_DEPTH.labels(row.queue, "dlq").set(max(row.dead_letters, 0))
        QUEUE_CONSUMERS.labels(row.queue).set(row.consumers)
    DEPENDENCY_UP.labels("rabbitmq").set(1)
    return True
