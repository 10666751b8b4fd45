"""The rows of events out, as the code sees them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any


class DeliveryStatus(StrEnum):
    pending = "pending"
    succeeded = "succeeded"
    failed = "failed"


@dataclass(frozen=True)
class Event:
    id: uuid.UUID
    event_type: str
    data: dict[str, Any]
    occurred_at: datetime
    created_at: datetime


@dataclass(frozen=True)
class Endpoint:
    id: uuid.UUID
    url: str
    description: str
    event_types: list[str]
    enabled: bool
    secret_sealed: str
    failing_since: datetime | None
    disabled_reason: str | None
    created_by: str
    created_at: datetime
    updated_at: datetime

    def wants(self, event_type: str) -> bool:
        return not self.event_types or event_type in self.event_types


@dataclass(frozen=True)
class Attempt:
    attempt: int
    attempted_at: datetime
    duration_ms: int
    status_code: int | None
    error: str | None


@dataclass(frozen=True)
class Delivery:
    id: uuid.UUID
    endpoint_id: uuid.UUID
    event_id: uuid.UUID
    event_type: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime | None
    give_up_at: datetime
    last_status_code: int | None
    last_error: str | None
    delivered_at: datetime | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Outgoing:
    """A claimed delivery with what sending it needs."""

    delivery: Delivery
    url: str
    secret_sealed: str
    event: Event
