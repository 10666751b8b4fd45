"""What a reconciliation finds, and the states a finding moves through."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class Source(StrEnum):
    internal = "internal"  # `ledger verify`'s invariants
    gateway = "gateway"  # payments and refunds against Cashfree's settlement reports
    payouts = "payouts"  # our transfers against Cashfree Payouts' status and UTR


class Kind(StrEnum):
    invariant_violation = "invariant_violation"
    missing_at_cashfree = "missing_at_cashfree"  # we hold it, Cashfree has no record
    missing_here = "missing_here"  # Cashfree reports it, we have no record
    amount_differs = "amount_differs"
    settled_twice = "settled_twice"
    unsettled = "unsettled"  # captured, not settled past T+N
    payout_mismatch = "payout_mismatch"  # a transfer's status or UTR is not what we hold


class State(StrEnum):
    open = "open"
    explained = "explained"  # an expected difference, said why; stays on record
    resolved = "resolved"  # fixed (by a person, elsewhere: never by the reconciler)


# to-state -> the states a person may move a finding from.
MOVES: dict[State, frozenset[State]] = {
    State.explained: frozenset({State.open}),
    State.resolved: frozenset({State.open, State.explained}),
}
# Who the reconciler is in a transition's actor column.
RECONCILER = "reconciler"


@dataclass(frozen=True)
class Observed:
    """One mismatch a reconciler saw. `reference` identifies it within (source, kind): the
    same mismatch seen again has the same reference and so the same finding."""

    source: Source
    kind: Kind
    reference: str
    detail: str
    refs: dict[str, Any] = field(default_factory=dict)
    expected_paise: int | None = None  # what we hold
    actual_paise: int | None = None  # what the other side says


@dataclass(frozen=True)
class Finding:
    id: uuid.UUID
    source: str
    kind: str
    reference: str
    refs: dict[str, Any]
    expected_paise: int | None
    actual_paise: int | None
    detail: str
    state: str
    seen_count: int
    first_seen_at: datetime
    last_seen_at: datetime
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Transition:
    id: uuid.UUID
    finding_id: uuid.UUID
    from_state: str | None
    to_state: str
    actor: str
    actor_role: str
    note: str
    created_at: datetime


@dataclass
class SourceResult:
    """One source's run: how many items it compared, how many agreed, how many differed
    only by what is expected (Cashfree's fee and the GST on it), and what it saw."""

    source: Source
    checked: int = 0
    matched: int = 0
    explained_differences: int = 0
    observed: list[Observed] = field(default_factory=list)
    error: str | None = None  # the source could not run to the end (nothing recorded)


@dataclass(frozen=True)
class Recorded:
    """What recording one source's observations did to the findings table."""

    opened: int = 0  # new findings
    seen_again: int = 0  # open or explained findings seen again (no new row)
    reopened: int = 0  # resolved findings seen again: open once more


@dataclass(frozen=True)
class SourceSummary:
    source: Source
    checked: int
    matched: int
    explained_differences: int
    mismatches: int
    opened: int
    seen_again: int
    reopened: int
    error: str | None


@dataclass(frozen=True)
class RunSummary:
    sources: list[SourceSummary]
    open_findings: int  # every open finding after the run, of any source

    @property
    def failed(self) -> bool:
        return any(s.error for s in self.sources)
