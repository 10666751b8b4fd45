"""An audit log entry as the log keeps it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class AuditEntry:
    id: uuid.UUID
    created_at: datetime
    actor_sub: str
    actor_role: str
    action: str
    target_type: str
    target_id: str
    request_id: str | None
    ip: str | None
    user_agent: str | None
    channel: str
    details: dict[str, Any]
    before: Any
    after: Any


@dataclass(frozen=True)
class AuditFilter:
    """What a reader narrows the log to; None: any."""

    actor: str | None = None
    action: str | None = None
    target_type: str | None = None
    target_id: str | None = None
    since: datetime | None = None  # included
    until: datetime | None = None  # excluded
