"""Answers of the audit log's API, and the query rules of its filters."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from commdesk_billing.modules.audit.model import AuditEntry

# Filters are matched exactly; these patterns only keep what cannot be an id out.
ActorPattern = r"^[^\x00-\x1f\x7f-\x9f]{1,200}$"  # no control character: a `sub`, `cli:<user>`
ActionPattern = r"^[a-z][a-z0-9_.]{0,99}$"
TargetTypePattern = r"^[a-z][a-z0-9_]{0,63}$"
TargetIdPattern = r"^[A-Za-z0-9_.:@-]{1,200}$"


class AuditEntryOut(BaseModel):
    id: uuid.UUID
    at: datetime
    actor: str = Field(description="The token's `sub`; `cli:<os user>` for an operator command")
    role: str = Field(description="The token's role; `operator` (CLI), `system` (a consumer)")
    action: str
    target_type: str
    target_id: str
    request_id: str | None = Field(description="As answered in X-Request-Id")
    ip: str | None = Field(description="The client's address (behind trusted proxies)")
    user_agent: str | None
    channel: str = Field(description="http, cli, consumer or job")
    details: dict[str, Any]
    before: Any = Field(description="What the target was; null for a creation")
    after: Any = Field(description="What the target is now")

    @classmethod
    def of(cls, e: AuditEntry) -> AuditEntryOut:
        return cls(
            id=e.id,
            at=e.created_at,
            actor=e.actor_sub,
            role=e.actor_role,
            action=e.action,
            target_type=e.target_type,
            target_id=e.target_id,
            request_id=e.request_id,
            ip=e.ip,
            user_agent=e.user_agent,
            channel=e.channel,
            details=e.details,
            before=e.before,
            after=e.after,
        )


class AuditPage(BaseModel):
    data: list[AuditEntryOut]
    next_cursor: str | None
