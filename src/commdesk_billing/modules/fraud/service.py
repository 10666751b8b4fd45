"""Fraud events (append-only) and the pre-checks made before an order is opened.

Events are facts for a human to look at (a webhook whose amount disagrees with the order, a
paid order whose amount is not what we asked); nothing here blocks a payment by itself
except the open-order brake, which only refuses to open yet another order.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, Literal

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.db.sql import sql
from commdesk_billing.telemetry import aftercommit
from commdesk_billing.telemetry.metrics import FRAUD_EVENTS

log = structlog.get_logger(__name__)

Severity = Literal["low", "medium", "high"]


async def record(
    conn: AsyncConnection,
    kind: str,
    *,
    severity: Severity,
    payment_id: uuid.UUID | None = None,
    user_id: uuid.UUID | None = None,
    webhook_id: uuid.UUID | None = None,
    details: dict[str, Any] | None = None,
) -> uuid.UUID:
    event_id = uuid.uuid4()
    await conn.execute(
        sql("""
        INSERT INTO fraud_events (id, kind, severity, payment_id, user_id, webhook_id, details)
        VALUES (:id, :kind, :sev, :pid, :uid, :wid, CAST(:details AS jsonb))"""),
        {
            "id": event_id,
            "kind": kind,
            "sev": severity,
            "pid": payment_id,
            "uid": user_id,
            "wid": webhook_id,
            "details": json.dumps(details or {}, default=str),
        },
    )
    recorded(conn, kind, severity, payment_id)
    return event_id


def recorded(conn: AsyncConnection, kind: str, severity: str, payment_id: uuid.UUID | None) -> None:
    """The metric (counted once the transaction commits) and the log line of one event
    written (here or with an assessment)."""
    aftercommit.count(conn, FRAUD_EVENTS.labels(kind))
    log.warning("fraud.event", kind=kind, severity=severity, payment_id=str(payment_id))


async def events_for_payment(conn: AsyncConnection, payment_id: uuid.UUID) -> list[dict[str, Any]]:
    rows = await conn.execute(
        sql("""
        SELECT kind, severity, details, created_at FROM fraud_events
         WHERE payment_id = :p ORDER BY created_at"""),
        {"p": payment_id},
    )
    return [dict(r._mapping) for r in rows]


async def has_event(conn: AsyncConnection, payment_id: uuid.UUID, kind: str) -> bool:
    found = (
        await conn.execute(
            sql("SELECT 1 FROM fraud_events WHERE payment_id = :p AND kind = :k LIMIT 1"),
            {"p": payment_id, "k": kind},
        )
    ).first()
    return found is not None
