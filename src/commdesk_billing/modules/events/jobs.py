"""`deliver_webhooks` (scheduler): POST the deliveries that are due.

As the notifications' job, three steps with no transaction across the network:
  1. claim, in one short transaction, a batch of due deliveries — at most
     `webhook_sends_per_endpoint` of each endpoint, so a receiver that is down (each POST
     waiting out its timeout) takes only its share of a batch, and none of an endpoint that
     already failed in this round (it costs one batch's timeouts per round, whatever its
     backlog) — each with one more attempt counted and a lease past the longest POST;
  2. POST them concurrently, each bounded by `webhook_timeout_s`, through one client with
     a bounded pool;
  3. record each outcome in its own transaction: succeeded; pending again after an
     exponential backoff with jitter; or failed for good once its retry window
     (`webhook_retry_window_s`, 3 days) is over. An endpoint with no success for
     `webhook_disable_after_s` is disabled.
A round stops claiming after `budget_s` (3 POST timeouts by default): the scheduler runs its
jobs one after another, and holds expire, the ledger is sealed, between two rounds.
A sender that dies between 2 and 3 leaves the row to be sent again when its lease ends:
at least once, with the same event id, which receivers dedupe on.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.config import Settings
from commdesk_billing.db.engine import in_transaction
from commdesk_billing.modules.events import repository as repo
from commdesk_billing.modules.events import sender
from commdesk_billing.modules.events.model import Outgoing
from commdesk_billing.telemetry.metrics import WEBHOOK_DELIVERIES

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Round:
    claimed: int
    succeeded: int
    retrying: int
    failed: int


def backoff(settings: Settings, attempts: int, jitter: float | None = None) -> timedelta:
    """Wait after the `attempts`-th failed attempt: base * 2^(attempts-1), capped, plus up
    to 25% (so the deliveries of one outage do not all come back in the same second)."""
    seconds = min(
        settings.webhook_retry_base_s * 2 ** min(attempts - 1, 30), settings.webhook_retry_max_s
    )
    spread = random.random() if jitter is None else jitter
    return timedelta(seconds=seconds * (1 + 0.25 * spread))


def _lease(settings: Settings) -> timedelta:
    return timedelta(seconds=60 + 2 * settings.webhook_timeout_s)


async def deliver_due(
    engine: AsyncEngine,
    settings: Settings,
    *,
    now: datetime | None = None,
    clock: Callable[[], datetime] | None = None,
    limit: int = 500,
    http: httpx.AsyncClient | None = None,
    budget_s: float | None = None,
) -> Round:
    """One round: up to `limit` deliveries, claimed a batch at a time just before they are
    sent (a lease starts when its POST does). `now`/`clock`: the time due times are
    compared with (tests move it); by default the wall clock."""
    if clock is None:
        clock = (lambda: now) if now is not None else (lambda: datetime.now(UTC))
    own = http is None
    client = http or sender.client(settings)
    outcomes: list[str] = []
    failing: set[uuid.UUID] = set()  # endpoints that failed in this round: not claimed again
    claimed = 0
    deadline = time.monotonic() + (3 * settings.webhook_timeout_s if budget_s is None else budget_s)
    try:
        while claimed < limit and time.monotonic() < deadline:
            at, n = clock(), min(settings.webhook_sends_at_once, limit - claimed)
            skip = frozenset(failing)

            async def claim(
                conn: AsyncConnection,
                at: datetime = at,
                n: int = n,
                skip: frozenset[uuid.UUID] = skip,
            ) -> list[Outgoing]:
                return await repo.claim_due(
                    conn, at, at + _lease(settings), n, settings.webhook_sends_per_endpoint, skip
                )

            batch = await in_transaction(engine, claim)
            if not batch:
                break
            claimed += len(batch)
            results = await asyncio.gather(
                *(_one(engine, settings, client, out, at) for out in batch)
            )
            outcomes += results
            failing |= {
                out.delivery.endpoint_id
                for out, result in zip(batch, results, strict=True)
                if result != "succeeded"
            }
    finally:
        if own:
            await client.aclose()
    return Round(
        claimed=claimed,
        succeeded=outcomes.count("succeeded"),
        retrying=outcomes.count("retrying"),
        failed=outcomes.count("failed"),
    )


async def _one(
    engine: AsyncEngine, settings: Settings, http: httpx.AsyncClient, out: Outgoing, now: datetime
) -> str:
    outcome = await _send_and_record(engine, settings, http, out, now)
    WEBHOOK_DELIVERIES.labels(outcome).inc()
    return outcome


async def _send_and_record(
    engine: AsyncEngine, settings: Settings, http: httpx.AsyncClient, out: Outgoing, now: datetime
) -> str:
    d = out.delivery
    started = datetime.now(UTC)
    try:
        result = await sender.post(settings, http, out)
    except Exception as unexpected:  # a bug here must still end in a recorded outcome
        result = sender.Outcome(False, None, f"unexpected {type(unexpected).__name__}", 0)
    retry_at: datetime | None = None
    if not result.succeeded and now < d.give_up_at:
        retry_at = min(now + backoff(settings, d.attempts), d.give_up_at)
    disable_after = (
        timedelta(seconds=settings.webhook_disable_after_s)
        if settings.webhook_disable_after_s
        else None
    )

    async def record(conn: AsyncConnection) -> bool:
        recorded = await repo.record_attempt(
            conn,
            d,
            at=started,
            duration_ms=result.duration_ms,
            status_code=result.status_code,
            error=result.error,
            retry_at=retry_at,
            succeeded=result.succeeded,
        )
        if not recorded:
            return False
        if result.succeeded:
            await repo.note_success(conn, d.endpoint_id)
            return False
        return await repo.note_failure(conn, d.endpoint_id, now, disable_after)

    disabled = await in_transaction(engine, record)
    fields = {
        "delivery_id": str(d.id),
        "endpoint_id": str(d.endpoint_id),
        "event_type": d.event_type,
        "attempt": d.attempts,
    }
    if disabled:
        log.error("webhook.endpoint.disabled", endpoint_id=str(d.endpoint_id))
    if result.succeeded:
        log.info("webhook.delivery.succeeded", status=result.status_code, **fields)
        return "succeeded"
    if retry_at is None:
        log.error("webhook.delivery.failed", error=result.error, **fields)
        return "failed"
    log.warning("webhook.delivery.retry", error=result.error, retry_at=str(retry_at), **fields)
    return "retrying"
