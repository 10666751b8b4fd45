"""Request and response bodies of the reconciliation API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictStr

from commdesk_billing.modules.reconciliation.model import Finding, Kind, Source, State, Transition
from commdesk_billing.security.text import StrictInput


class NoteIn(StrictInput):
    note: Annotated[
        StrictStr,
        Field(
            min_length=3,
            max_length=2000,
            pattern=r"\S",
            description="Why: the expected difference, or what was done about it",
        ),
    ]


_DETAIL_EXAMPLE = (
    "order cdb_5b7c9d1e2f3a4b5c8d6e7f8091a2b3c4: we captured ₹352.82, Cashfree reports ₹347.82"
)


class TransitionOut(BaseModel):
    from_state: State | None = Field(description="None on the opening transition")
    to_state: State
    actor: str
    actor_role: str
    note: str
    created_at: datetime

    @classmethod
    def of(cls, t: Transition) -> TransitionOut:
        return cls(
            from_state=t.from_state,
            to_state=t.to_state,
            actor=t.actor,
            actor_role=t.actor_role,
            note=t.note,
            created_at=t.created_at,
        )


class FindingOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "7c8d9e0f-1a2b-4c3d-9e4f-5a6b7c8d9e0f",
                    "source": "gateway",
                    "kind": "amount_differs",
                    "reference": "payment:cdb_5b7c9d1e2f3a4b5c8d6e7f8091a2b3c4",
                    "references": {
                        "order_id": "cdb_5b7c9d1e2f3a4b5c8d6e7f8091a2b3c4",
                        "cf_payment_id": "5114917215",
                    },
                    "expected_paise": 35282,
                    "actual_paise": 34782,
                    "detail": _DETAIL_EXAMPLE,
                    "state": "explained",
                    "seen_count": 2,
                    "first_seen_at": "2026-12-06T02:00:00Z",
                    "last_seen_at": "2026-12-07T02:00:00Z",
                    "created_at": "2026-12-06T02:00:00Z",
                    "updated_at": "2026-12-07T09:30:00Z",
                    "transitions": [
                        {
                            "from_state": None,
                            "to_state": "open",
                            "actor": "reconciler",
                            "actor_role": "reconciler",
                            "note": _DETAIL_EXAMPLE,
                            "created_at": "2026-12-06T02:00:00Z",
                        },
                        {
                            "from_state": "open",
                            "to_state": "explained",
                            "actor": "fin-asha",
                            "actor_role": "finance_admin",
                            "note": "Cashfree deducted the dispute fee (ticket 4521)",
                            "created_at": "2026-12-07T09:30:00Z",
                        },
                    ],
                }
            ]
        }
    )

    id: uuid.UUID
    source: Source = Field(
        description="internal: the ledger's invariants; gateway: payments and refunds "
        "against Cashfree's settlements; payouts: transfers against Cashfree Payouts"
    )
    kind: Kind
    reference: str = Field(description="What it is about; unique with source and kind")
    references: dict[str, Any] = Field(description="Order, payment, refund, transfer ids…")
    expected_paise: int | None = Field(description="What we hold")
    actual_paise: int | None = Field(description="What Cashfree (or the books) say")
    detail: str
    state: State = Field(
        description="open: to look at; explained: an expected difference; resolved: dealt with"
    )
    seen_count: int = Field(description="Runs that saw it")
    first_seen_at: datetime
    last_seen_at: datetime
    created_at: datetime
    updated_at: datetime
    transitions: list[TransitionOut] | None = Field(
        default=None, description="Its trail, oldest first (on a single finding)"
    )

    @classmethod
    def of(cls, f: Finding, trail: list[Transition] | None = None) -> FindingOut:
        return cls(
            id=f.id,
            source=f.source,
            kind=f.kind,
            reference=f.reference,
            references=f.refs,
            expected_paise=f.expected_paise,
            actual_paise=f.actual_paise,
            detail=f.detail,
            state=f.state,
            seen_count=f.seen_count,
            first_seen_at=f.first_seen_at,
            last_seen_at=f.last_seen_at,
            created_at=f.created_at,
            updated_at=f.updated_at,
            transitions=None if trail is None else [TransitionOut.of(t) for t in trail],
        )


class FindingPage(BaseModel):
    data: list[FindingOut]
    next_cursor: str | None
