"""`deliver_notifications` (scheduler): send the deliveries that are due.

Three steps, none holding a transaction across the network:
  1. claim: in one short transaction, a batch of due pending rows (as many as are sent at
     once, claimed only when they are sent) get one more attempt counted and a lease
     (`next_attempt_at` moved past the sends), and the email addresses are read;
  2. send, concurrently, with no transaction open (an SMTP relay that hangs holds no
     database connection, and no money path ever waits on it);
  3. record each outcome in a transaction of its own: sent; or pending again after an
     exponential backoff; or, after the last attempt or a permanent refusal, failed for
     good with an error-level `notification.delivery.failed` (which the alert rules count).
A sender that dies between 2 and 3 leaves the row pending until its lease ends, and it is
sent again then: at least once, with the same Message-ID (`delivery.message_id`) and
notification id header, which receivers can drop as a repeat.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.config import Settings
from commdesk_billing.db.engine import in_transaction
from commdesk_billing.modules.notifications import repository as repo
from commdesk_billing.modules.notifications.delivery import (
    SENDS_AT_ONCE,
    Adapter,
    NotConfigured,
    Outgoing,
    SendFailed,
)
from commdesk_billing.modules.notifications.model import Channel, Delivery
from commdesk_billing.modules.users import service as users
from commdesk_billing.telemetry.metrics import NOTIFICATION_DELIVERIES

log = structlog.get_logger(__name__)

_CONCURRENCY = SENDS_AT_ONCE


@dataclass(frozen=True)
class Round:
    claimed: int
    sent: int
    retrying: int
    failed: int
    skipped: int


def backoff(settings: Settings, attempts: int) -> timedelta:
    """Wait after the `attempts`-th failed attempt: base * 2^(attempts-1), capped."""
    seconds = settings.notification_retry_base_s * 2 ** min(attempts - 1, 30)
    return timedelta(seconds=min(seconds, settings.notification_retry_max_s))


def _lease(settings: Settings) -> timedelta:
    # Longer than any send can take (each step of an SMTP session has this timeout).
    return timedelta(
        seconds=60 + 6 * max(settings.smtp_timeout_s, settings.notify_webhook_timeout_s)
    )


async def deliver_due(
    engine: AsyncEngine,
    settings: Settings,
    *,
    now: datetime | None = None,
    clock: Callable[[], datetime] | None = None,
    limit: int = 200,
    http: httpx.AsyncClient | None = None,
) -> Round:
    """One round: up to `limit` deliveries, claimed `_CONCURRENCY` at a time, each batch
    when it is about to be sent. Its lease so starts when its sends start: a row claimed
    with the round but sent only after the batches before it (a slow relay) would reach
    the end of its lease unsent, be claimed by another job, and be sent by both.
    `now` or `clock`: the time the due times are compared with (tests move it); by
    default the wall clock, read again for each batch."""
    if clock is None:
        clock = (lambda: now) if now is not None else (lambda: datetime.now(UTC))
    adapter = Adapter(settings, http)
    outcomes: list[str] = []
    claimed = 0
    while claimed < limit:
        at, n = clock(), min(_CONCURRENCY, limit - claimed)

        async def claim(conn: AsyncConnection, at: datetime = at, n: int = n) -> list[Outgoing]:
            due = await repo.claim_due(conn, at, at + _lease(settings), n)
            return [Outgoing(d, await _address(conn, d)) for d in due]

        batch = await in_transaction(engine, claim)
        if not batch:
            break
        claimed += len(batch)
        outcomes += await asyncio.gather(*(_one(engine, settings, adapter, o, at) for o in batch))
    return Round(
        claimed=claimed,
        sent=outcomes.count("sent"),
        retrying=outcomes.count("retrying"),
        failed=outcomes.count("failed"),
        skipped=outcomes.count("skipped"),
    )


async def _one(
    engine: AsyncEngine, settings: Settings, adapter: Adapter, out: Outgoing, at: datetime
) -> str:
    outcome = await _send_and_record(engine, settings, adapter, out, at)
    NOTIFICATION_DELIVERIES.labels(out.delivery.channel.value, outcome).inc()
    return outcome


async def _address(conn: AsyncConnection, d: Delivery) -> str | None:
    if d.channel is not Channel.email or d.user_id is None:
        return None
    try:
        return (await users.get_user(conn, d.user_id)).email
    except LookupError:
        return None


async def _send_and_record(
    engine: AsyncEngine, settings: Settings, adapter: Adapter, out: Outgoing, now: datetime
) -> str:
    d = out.delivery
    try:
        try:
            provider_id = await adapter.send(out)
        except NotConfigured as skipped:
            reason = str(skipped)
            await in_transaction(engine, lambda c: repo.mark_skipped(c, d.id, d.attempts, reason))
            log.info("notification.delivery.skipped", delivery_id=str(d.id), reason=reason)
            return "skipped"
        except SendFailed:
            raise
        except Exception as unexpected:  # a bug here must still end in a recorded outcome
            raise SendFailed(f"unexpected {type(unexpected).__name__}", retryable=True) from None
    except SendFailed as exc:
        last = d.attempts >= settings.notification_max_attempts or not exc.retryable
        retry_at = None if last else now + backoff(settings, d.attempts)
        error = str(exc)
        await in_transaction(
            engine, lambda c: repo.mark_attempt_failed(c, d.id, d.attempts, error, retry_at)
        )
        fields = {
            "delivery_id": str(d.id),
            "key": d.notification_key,
            "channel": d.channel.value,
            "attempt": d.attempts,
            "error": str(exc),
        }
        if last:
            log.error("notification.delivery.failed", **fields)
            return "failed"
        log.warning("notification.delivery.retry", retry_at=str(retry_at), **fields)
        return "retrying"
    sent_at = datetime.now(UTC)
    await in_transaction(
        engine, lambda c: repo.mark_sent(c, d.id, d.attempts, sent_at, provider_id)
    )
    log.info("notification.delivery.sent", delivery_id=str(d.id), channel=d.channel.value)
    return "sent"
