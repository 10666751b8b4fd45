"""Audit trail of privileged actions (append-only in the database)."""

from __future__ import annotations

import json
import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.db.sql import sql
from commdesk_billing.security.jwt import Principal


async def record(
    conn: AsyncConnection,
    principal: Principal,
    *,
    action: str,
    target_type: str,
    target_id: str,
    details: dict[str, Any] | None = None,
    request_id: str | None = None,
) -> None:
    await conn.execute(
        sql("""
        INSERT INTO audit_logs (id, actor_sub, actor_role, action, target_type, target_id,
                                request_id, details)
        VALUES (:id, :sub, :role, :action, :tt, :tid, :rid, CAST(:details AS jsonb))"""),
        {
            "id": uuid.uuid4(),
            "sub": principal.sub,
            "role": principal.role.value,
            "action": action,
            "tt": target_type,
            "tid": target_id,
            "rid": request_id,
            "details": json.dumps(details or {}),
        },
    )
