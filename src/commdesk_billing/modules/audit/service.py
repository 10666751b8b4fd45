"""Audit trail of privileged actions (append-only in the database).

`record` runs inside the caller's transaction, so the entry commits with the action or not
at all. Where the action came from (client address, user agent, request id, or the
operator's account for a CLI command) is read from `security/origin.py`, bound once per
request, command or message: callers say only who acted, on what, and what changed.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.modules.audit import repository as repo
from commdesk_billing.modules.audit.model import AuditEntry, AuditFilter
from commdesk_billing.security import origin
from commdesk_billing.security.jwt import Principal


class NoActor(RuntimeError):
    """An entry with neither a principal nor a bound origin naming who acted: a bug of the
    caller, never recorded as an anonymous change."""


async def record(
    conn: AsyncConnection,
    principal: Principal | None,
    *,
    action: str,
    target_type: str,
    target_id: str,
    details: dict[str, Any] | None = None,
    request_id: str | None = None,
    before: Any = None,
    after: Any = None,
) -> None:
    """One entry. `principal` None: the actor of the bound origin (`cli:<os user>` for an
    operator's command, `consumer:<queue>` for a message). `before`/`after`: what the target
    was and is (JSON-able; None where there is nothing to compare, a creation's `before`)."""
    here = origin.current()
    if principal is not None:
        sub, role = principal.sub, principal.role.value
    elif here is not None and here.actor and here.role:
        sub, role = here.actor, here.role
    else:
        raise NoActor(f"audit entry {action!r} names no actor")
    await repo.insert(
        conn,
        {
            "id": uuid.uuid4(),
            "sub": sub,
            "role": role,
            "action": action,
            "tt": target_type,
            "tid": target_id,
            # The bound request id is the one answered in X-Request-Id (Observe makes one up
            # when the caller sent none); an explicit one (older callers) still wins.
            "rid": request_id or (here.request_id if here else None),
            "details": details or {},
            "ip": here.ip if here else None,
            "ua": here.user_agent if here else None,
            "channel": here.channel if here else "job",
            "before": before,
            "after": after,
        },
    )


async def entries(
    conn: AsyncConnection,
    where: AuditFilter,
    *,
    before: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[AuditEntry]:
    """A page of the log, newest first."""
    return await repo.page(conn, where, before=before, limit=limit)
