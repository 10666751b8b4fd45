"""SQL on `notification_deliveries`, the one table this module owns."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.db.sql import sql
from commdesk_billing.modules.notifications.model import Channel, Delivery, DeliveryStatus

_COLUMNS = """id, notification_key, channel, event_type, template, user_id, recipient, content,
    status, attempts, last_error, next_attempt_at, sent_at, provider_message_id, created_at,
    updated_at"""


@dataclass(frozen=True)
class NewDelivery:
    notification_key: str
    channel: Channel
    event_type: str
    template: str
    user_id: uuid.UUID | None
    recipient: str | None
    content: dict[str, Any]
    status: DeliveryStatus  # pending, or skipped with `last_error` saying why
    last_error: str | None
    next_attempt_at: datetime | None


def _delivery(row: Any) -> Delivery:
    data = row._asdict()
    if isinstance(data["content"], str):
        data["content"] = json.loads(data["content"])
    data["channel"] = Channel(data["channel"])
    data["status"] = DeliveryStatus(data["status"])
    return Delivery(**data)


async def insert(conn: AsyncConnection, d: NewDelivery) -> bool:
    """False when this (key, channel) is recorded already: the unique key, not a check
    before the insert, is what keeps a redelivered event from being sent twice."""
    row = (
        await conn.execute(
            sql("""
        INSERT INTO notification_deliveries
               (id, notification_key, channel, event_type, template, user_id, recipient,
                content, status, last_error, next_attempt_at)
        VALUES (:id, :key, :channel, :event, :template, :user_id, :recipient,
                CAST(:content AS jsonb), :status, :last_error, :next_at)
        ON CONFLICT (notification_key, channel) DO NOTHING
        RETURNING id"""),
            {
                "id": uuid.uuid4(),
                "key": d.notification_key,
                "channel": d.channel.value,
                "event": d.event_type,
                "template": d.template,
                "user_id": d.user_id,
                "recipient": d.recipient,
                "content": json.dumps(d.content),
                "status": d.status.value,
                "last_error": d.last_error,
                "next_at": d.next_attempt_at,
            },
        )
    ).first()
    return row is not None


async def claim_due(
    conn: AsyncConnection, now: datetime, lease_until: datetime, limit: int
) -> list[Delivery]:
    """Pending deliveries due by `now`, each with one more attempt counted and leased until
    `lease_until`: were the sender to die mid-send, the row is due again after the lease.
    SKIP LOCKED: two senders never take the same row."""
    rows = (
        await conn.execute(
            sql(f"""
        UPDATE notification_deliveries d
           SET attempts = d.attempts + 1, next_attempt_at = :lease, updated_at = now()
         WHERE d.id IN (SELECT id FROM notification_deliveries
                         WHERE status = 'pending' AND next_attempt_at <= :now
                         ORDER BY next_attempt_at LIMIT :n FOR UPDATE SKIP LOCKED)
        RETURNING {_COLUMNS}"""),
            {"now": now, "lease": lease_until, "n": limit},
        )
    ).all()
    return sorted((_delivery(r) for r in rows), key=lambda d: d.created_at)


async def mark_sent(
    conn: AsyncConnection, delivery_id: uuid.UUID, attempts: int, at: datetime, message_id: str
) -> bool:
    # Only the attempt that claimed the row records its outcome (`attempts` matches).
    result = await conn.execute(
        sql("""
        UPDATE notification_deliveries
           SET status = 'sent', sent_at = :at, provider_message_id = :mid,
               next_attempt_at = NULL, last_error = NULL, updated_at = now()
         WHERE id = :id AND status = 'pending' AND attempts = :attempts"""),
        {"id": delivery_id, "attempts": attempts, "at": at, "mid": message_id[:300]},
    )
    return result.rowcount == 1


async def mark_attempt_failed(
    conn: AsyncConnection,
    delivery_id: uuid.UUID,
    attempts: int,
    error: str,
    retry_at: datetime | None,
) -> bool:
    """Pending again until `retry_at`, or failed for good (`retry_at` None)."""
    result = await conn.execute(
        sql("""
        UPDATE notification_deliveries
           SET status = CASE WHEN CAST(:retry_at AS timestamptz) IS NULL
                             THEN 'failed' ELSE 'pending' END,
               next_attempt_at = :retry_at, last_error = :error, updated_at = now()
         WHERE id = :id AND status = 'pending' AND attempts = :attempts"""),
        {"id": delivery_id, "attempts": attempts, "error": error[:500], "retry_at": retry_at},
    )
    return result.rowcount == 1


async def mark_skipped(
    conn: AsyncConnection, delivery_id: uuid.UUID, attempts: int, reason: str
) -> bool:
    result = await conn.execute(
        sql("""
        UPDATE notification_deliveries
           SET status = 'skipped', next_attempt_at = NULL, last_error = :reason,
               updated_at = now()
         WHERE id = :id AND status = 'pending' AND attempts = :attempts"""),
        {"id": delivery_id, "attempts": attempts, "reason": reason[:500]},
    )
    return result.rowcount == 1


async def retry(conn: AsyncConnection, delivery_id: uuid.UUID, now: datetime) -> bool:
    """A delivery failed for good, or skipped, made due again (an operator's decision,
    once the cause is fixed: a channel configured, a relay's refusal resolved)."""
    result = await conn.execute(
        sql("""
        UPDATE notification_deliveries
           SET status = 'pending', next_attempt_at = :now, updated_at = now()
         WHERE id = :id AND status IN ('failed', 'skipped')"""),
        {"id": delivery_id, "now": now},
    )
    return result.rowcount == 1


async def for_key(conn: AsyncConnection, notification_key: str) -> list[Delivery]:
    rows = (
        await conn.execute(
            sql(f"""SELECT {_COLUMNS} FROM notification_deliveries
                     WHERE notification_key = :key ORDER BY channel"""),
            {"key": notification_key},
        )
    ).all()
    return [_delivery(r) for r in rows]


async def listing(
    conn: AsyncConnection, status: DeliveryStatus | None, limit: int
) -> list[Delivery]:
    rows = (
        await conn.execute(
            sql(f"""SELECT {_COLUMNS} FROM notification_deliveries
                     WHERE CAST(:status AS text) IS NULL OR status = :status
                     ORDER BY updated_at DESC LIMIT :n"""),
            {"status": status.value if status else None, "n": limit},
        )
    ).all()
    return [_delivery(r) for r in rows]
