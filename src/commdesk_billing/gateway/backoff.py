"""Cashfree's back-off, shared by every process through PostgreSQL (`gateway_backoff`).

A 429 seen by any of our Cashfree clients (the API's, each worker's) is written here by the
client's `Recorder`, in a transaction of its own: a consumer's transaction that failed on the
429 rolls back, the note does not. The scheduler's sync jobs read it (`active`) and announce
nothing new until Cashfree's `x-ratelimit-retry` has passed, so a rate limit backs off the
whole job rather than a request or a consumer sleeping on it.

Why PostgreSQL and not Redis: every process already has it, the jobs read it in the
transaction that would otherwise claim rows, and one row per gateway costs nothing.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from datetime import datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.config import Settings
from commdesk_billing.db.engine import in_transaction, make_engine
from commdesk_billing.db.sql import sql

log = structlog.get_logger(__name__)

CASHFREE = "cashfree"
# Recording must never hold a failing call up for long (the database may be the trouble).
NOTE_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Backoff:
    until: datetime
    op: str
    retry_after_s: int
    hits: int
    last_seen_at: datetime


def _seconds(retry_after_s: float) -> int:
    """Cashfree's hint in whole seconds, at least one (a 429 always means "not now")."""
    if not math.isfinite(retry_after_s):
        return 1
    # Bounded like the client's reading of the header: a back-off is minutes, never years.
    return max(1, min(300, math.ceil(retry_after_s)))


async def note(
    conn: AsyncConnection, op: str, retry_after_s: float, *, gateway: str = CASHFREE
) -> None:
    """A 429 was seen: back off until now + its hint (never earlier than a back-off already
    recorded)."""
    await conn.execute(
        sql("""
        INSERT INTO gateway_backoff (gateway, until, op, retry_after_s)
        VALUES (:g, now() + make_interval(secs => CAST(:s AS integer)), :op,
                CAST(:s AS integer))
        ON CONFLICT (gateway) DO UPDATE SET
            until = greatest(gateway_backoff.until, EXCLUDED.until),
            op = EXCLUDED.op, retry_after_s = EXCLUDED.retry_after_s,
            hits = gateway_backoff.hits + 1, last_seen_at = now()"""),
        {"g": gateway, "op": op[:60], "s": _seconds(retry_after_s)},
    )


async def active(conn: AsyncConnection, *, gateway: str = CASHFREE) -> Backoff | None:
    """The back-off in force now, if any."""
    row = (
        await conn.execute(
            sql("""
            SELECT until, op, retry_after_s, hits, last_seen_at FROM gateway_backoff
             WHERE gateway = :g AND until > now()"""),
            {"g": gateway},
        )
    ).first()
    return Backoff(*row) if row else None


async def latest(conn: AsyncConnection, *, gateway: str = CASHFREE) -> Backoff | None:
    """The last back-off recorded, over or not (what the operator looks at)."""
    row = (
        await conn.execute(
            sql("""
            SELECT until, op, retry_after_s, hits, last_seen_at FROM gateway_backoff
             WHERE gateway = :g"""),
            {"g": gateway},
        )
    ).first()
    return Backoff(*row) if row else None


async def clear(conn: AsyncConnection, *, gateway: str = CASHFREE) -> None:
    """End a back-off now (its history, `hits`, is kept)."""
    await conn.execute(
        sql("UPDATE gateway_backoff SET until = now() WHERE gateway = :g AND until > now()"),
        {"g": gateway},
    )


class Recorder:
    """What the clients our processes build call on every 429 (`CashfreeClient`'s
    `rate_limit_sink`). It writes in a transaction of its own, over a connection opened for
    it and closed after: 429s are rare, and no process keeps a connection idle for them (a
    pooler's or Neon's connection budget is better spent). It never raises: a back-off that
    could not be recorded must not hide the 429 itself."""

    def __init__(self, settings: Settings, *, gateway: str = CASHFREE) -> None:
        self.settings = settings
        self.gateway = gateway

    async def note(self, op: str, retry_after_s: float) -> None:
        # One upsert per 429: they come no faster than our calls do, and `hits` then says
        # exactly how many there were.
        engine = make_engine(self.settings, pool_size=1)
        try:
            async with asyncio.timeout(NOTE_TIMEOUT_S):
                await in_transaction(
                    engine, lambda conn: note(conn, op, retry_after_s, gateway=self.gateway)
                )
        except Exception as exc:
            log.warning("gateway.backoff.not_recorded", op=op, error=str(exc)[:200])
            return
        finally:
            await engine.dispose()
        log.warning(
            "gateway.backoff.recorded",
            gateway=self.gateway,
            op=op,
            retry_after_s=_seconds(retry_after_s),
        )

    async def aclose(self) -> None:
        """Nothing is kept open between notes."""
