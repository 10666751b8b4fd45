"""Bodies and answers of the events-out routes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, field_validator

from commdesk_billing.modules.events.model import (
    Attempt,
    Delivery,
    DeliveryStatus,
    Endpoint,
    Event,
)
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


_ENDPOINT_EXAMPLE: dict[str, Any] = {
    "id": "3f1c9a52-7d4e-4b8a-9c21-6e0f5a2b7d13",
    "url": "https://hooks.example.com/commdesk-billing",
    "description": "ledger sync",
    "event_types": ["payment.credited", "refund.succeeded"],
    "enabled": True,
    "disabled_reason": None,
    "failing_since": None,
    "created_by": "svc-ledger-sync",
    "created_at": "2026-12-01T10:00:00Z",
    "updated_at": "2026-12-01T10:00:00Z",
}


class EndpointOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_ENDPOINT_EXAMPLE]})

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
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{**_ENDPOINT_EXAMPLE, "secret": "whsec_<43 characters, shown once>"}]
        }
    )

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
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "8a2e4f61-0c3b-4d7e-b1a9-5f6c7d8e9a01",
                    "endpoint_id": "3f1c9a52-7d4e-4b8a-9c21-6e0f5a2b7d13",
                    "event_id": "c4d5e6f7-1a2b-4c3d-8e9f-0a1b2c3d4e5f",
                    "event_type": "payment.credited",
                    "status": "pending",
                    "attempts": 1,
                    "next_attempt_at": "2026-12-07T09:31:00Z",
                    "give_up_at": "2026-12-10T09:30:00Z",
                    "last_status_code": 503,
                    "last_error": None,
                    "delivered_at": None,
                    "created_at": "2026-12-07T09:30:00Z",
                    "attempt_log": [
                        {
                            "attempt": 1,
                            "attempted_at": "2026-12-07T09:30:01Z",
                            "duration_ms": 412,
                            "status_code": 503,
                            "error": None,
                        }
                    ],
                }
            ]
        }
    )

    id: uuid.UUID
    endpoint_id: uuid.UUID
    event_id: uuid.UUID
    event_type: str
    status: DeliveryStatus = Field(
        description="pending: due again at `next_attempt_at`; succeeded; failed: gave up"
    )
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
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "c4d5e6f7-1a2b-4c3d-8e9f-0a1b2c3d4e5f",
                    "type": "payment.credited",
                    "occurred_at": "2026-12-07T09:29:58Z",
                    "created_at": "2026-12-07T09:30:00Z",
                    "data": {
                        "payment_id": "5b7c9d1e-2f3a-4b5c-8d6e-7f8091a2b3c4",
                        "order_id": "cdb_5b7c9d1e2f3a4b5c8d6e7f8091a2b3c4",
                        "wallet_id": "0b6c2d1e-8f4a-4c3b-9a55-2f1f0c9e7a10",
                        "amount_paise": 35282,
                        "taxable_paise": 29900,
                        "gst_amount_paise": 5382,
                        "credits": 300,
                        "pack_code": "pack_300",
                        "kind": "pack",
                        "user": "commdesk-user-42",
                    },
                }
            ]
        }
    )

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
