"""The audit log's SQL (private to `modules/audit`). Rows are only ever inserted: the
database refuses UPDATE, DELETE and TRUNCATE (migrations 0001, 0021)."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.db.sql import sql
from commdesk_billing.modules.audit.model import AuditEntry, AuditFilter

_COLS = """id, created_at, actor_sub, actor_role, action, target_type, target_id, request_id,
           host(ip) AS ip, user_agent, channel, details, before, after"""


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, default=str)


async def insert(conn: AsyncConnection, row: dict[str, Any]) -> None:
    await conn.execute(
        sql("""
        INSERT INTO audit_logs (id, actor_sub, actor_role, action, target_type, target_id,
                                request_id, details, ip, user_agent, channel, before, after)
        VALUES (:id, :sub, :role, :action, :tt, :tid, :rid, CAST(:details AS jsonb),
                CAST(:ip AS inet), :ua, :channel, CAST(:before AS jsonb),
                CAST(:after AS jsonb))"""),
        {
            **row,
            "details": json.dumps(row["details"], default=str),
            "before": _json(row["before"]),
            "after": _json(row["after"]),
        },
    )


def _entry(r: Row[Any]) -> AuditEntry:
    return AuditEntry(**r._asdict())


async def page(
    conn: AsyncConnection,
    where: AuditFilter,
    *,
    before: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[AuditEntry]:
    """Newest first by (created_at, id); `before` is the last row of the previous page."""
    rows = await conn.execute(
        sql(f"""
        SELECT {_COLS} FROM audit_logs
         WHERE (CAST(:actor AS text) IS NULL OR actor_sub = :actor)
           AND (CAST(:action AS text) IS NULL OR action = :action)
           AND (CAST(:tt AS text) IS NULL OR target_type = :tt)
           AND (CAST(:tid AS text) IS NULL OR target_id = :tid)
           AND (CAST(:since AS timestamptz) IS NULL OR created_at >= :since)
           AND (CAST(:until AS timestamptz) IS NULL OR created_at < :until)
           AND (CAST(:at AS timestamptz) IS NULL
                OR (created_at, id) < (CAST(:at AS timestamptz), CAST(:rid AS uuid)))
         ORDER BY created_at DESC, id DESC
         LIMIT :n"""),
        {
            "actor": where.actor,
            "action": where.action,
            "tt": where.target_type,
            "tid": where.target_id,
            "since": where.since,
            "until": where.until,
            "at": before[0] if before else None,
            "rid": before[1] if before else None,
            "n": limit,
        },
    )
    return [_entry(r) for r in rows]
