"""Bodies and answers of the events-out routes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StrictBool, StrictStr, field_validator

from commdesk_billing.modules.events.model import Attempt, Delivery, Endpoint, Event
from commdesk_billing.modules.events.vocabulary import PUBLIC_TYPES
from commdesk_billing.security.text import StrictInput

EventType = Literal[
    "payment.paid",
    "payment.credited",
    "payment.failed",
    "refund.created",
    "refund.succeeded",
    "refund.failed",
    "wallet.low_balance",
    "auto_recharge.requested",
    "auto_recharge.succeeded",
    "auto_recharge.failed",
    "auto_recharge.disabled",
    "spend.created",
    "settlement.paid",
    "settlement.failed",
    "settlement.reversed",
]
assert set(EventType.__args__) == set(PUBLIC_TYPES)  # type: ignore[attr-defined]

Url = Annotated[StrictStr, Field(min_length=1, max_length=2048)]
Description = Annotated[StrictStr, Field(max_length=500)]
EventTypes = Annotated[
    list[EventType],
    Field(max_length=len(PUBLIC_TYPES), description="Types sent to it; empty: every type"),
]


def _unique(types: list[str] | None) -> list[str] | None:
    if types is not None and len(set(types)) != len(types):
        raise ValueError("event types repeat")
    return sorted(types) if types is not None else None


class EndpointIn(StrictInput):
    url: Url = Field(description="https (plain http to a loopback address outside production)")
    description: Description = ""
    event_types: EventTypes = []

    _types = field_validator("event_types")(_unique)


class EndpointPatch(StrictInput):
    url: Url | None = None
    description: Description | None = None
    event_types: EventTypes | None = None
    enabled: StrictBool | None = None

    _types = field_validator("event_types")(_unique)


class EndpointOut(BaseModel):
    id: uuid.UUID
    url: str
    description: str
    event_types: list[str]
    enabled: bool
    disabled_reason: str | None
    failing_since: datetime | None
    created_by: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, e: Endpoint) -> EndpointOut:
        return cls(
            id=e.id,
            url=e.url,
            description=e.description,
            event_types=e.event_types,
            enabled=e.enabled,
            disabled_reason=e.disabled_reason,
            failing_since=e.failing_since,
            created_by=e.created_by,
            created_at=e.created_at,
            updated_at=e.updated_at,
        )


class EndpointWithSecret(EndpointOut):
    secret: str = Field(description="The signing secret, shown this once: store it now")


class EndpointPage(BaseModel):
    data: list[EndpointOut]
    next_cursor: str | None


class AttemptOut(BaseModel):
    attempt: int
    attempted_at: datetime
    duration_ms: int
    status_code: int | None
    error: str | None

    @classmethod
    def of(cls, a: Attempt) -> AttemptOut:
        return cls(**a.__dict__)


class DeliveryOut(BaseModel):
    id: uuid.UUID
    endpoint_id: uuid.UUID
    event_id: uuid.UUID
    event_type: str
    status: str
    attempts: int
    next_attempt_at: datetime | None
    give_up_at: datetime
    last_status_code: int | None
    last_error: str | None
    delivered_at: datetime | None
    created_at: datetime
    attempt_log: list[AttemptOut]

    @classmethod
    def of(cls, d: Delivery, attempts: list[Attempt]) -> DeliveryOut:
        return cls(
            id=d.id,
            endpoint_id=d.endpoint_id,
            event_id=d.event_id,
            event_type=d.event_type,
            status=d.status.value,
            attempts=d.attempts,
            next_attempt_at=d.next_attempt_at,
            give_up_at=d.give_up_at,
            last_status_code=d.last_status_code,
            last_error=d.last_error,
            delivered_at=d.delivered_at,
            created_at=d.created_at,
            attempt_log=[AttemptOut.of(a) for a in attempts],
        )


class DeliveryPage(BaseModel):
    data: list[DeliveryOut]
    next_cursor: str | None


class EventOut(BaseModel):
    id: uuid.UUID
    type: str
    occurred_at: datetime
    created_at: datetime
    data: dict[str, Any]

    @classmethod
    def of(cls, e: Event) -> EventOut:
        return cls(
            id=e.id,
            type=e.event_type,
            occurred_at=e.occurred_at,
            created_at=e.created_at,
            data=e.data,
        )


class EventPage(BaseModel):
    data: list[EventOut]
    next_cursor: str | None
