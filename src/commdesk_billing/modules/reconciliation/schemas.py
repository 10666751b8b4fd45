"""Request and response bodies of the reconciliation API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, Field, StrictStr

from commdesk_billing.modules.reconciliation.model import Finding, Transition
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


class TransitionOut(BaseModel):
    from_state: str | None
    to_state: str
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
    id: uuid.UUID
    source: str = Field(description="internal | gateway | payouts")
    kind: str = Field(
        description="invariant_violation | missing_at_cashfree | missing_here | "
        "amount_differs | settled_twice | unsettled | payout_mismatch"
    )
    reference: str = Field(description="What it is about; unique with source and kind")
    references: dict[str, Any] = Field(description="Order, payment, refund, transfer ids…")
    expected_paise: int | None = Field(description="What we hold")
    actual_paise: int | None = Field(description="What Cashfree (or the books) say")
    detail: str
    state: str = Field(description="open | explained | resolved")
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
