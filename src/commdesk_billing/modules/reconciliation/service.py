"""The findings' service: record what a reconciler saw (a mismatch seen again is the same
finding), list them, and a person's explain / resolve with a note (audited). Importable by
any console: it takes a connection and a principal, nothing of HTTP."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.errors import FindingNotFound, FindingStateConflict
from commdesk_billing.modules.audit import service as audit
from commdesk_billing.modules.reconciliation import repository as repo
from commdesk_billing.modules.reconciliation.model import (
    MOVES,
    RECONCILER,
    Finding,
    Kind,
    Observed,
    Recorded,
    Source,
    State,
    Transition,
)
from commdesk_billing.security.jwt import Principal
from commdesk_billing.telemetry.metrics import RECONCILIATION_FINDINGS_OPEN

# Room for the "seen again after it was resolved: " prefix within a note's 2000 characters.
DETAIL_MAX = 1800
REFERENCE_MAX = 300


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def observed(
    source: Source,
    kind: Kind,
    reference: str,
    detail: str,
    *,
    refs: dict[str, Any] | None = None,
    expected_paise: int | None = None,
    actual_paise: int | None = None,
) -> Observed:
    """An observation with its reference and detail cut to what the table keeps."""
    return Observed(
        source=source,
        kind=kind,
        reference=clip(reference, REFERENCE_MAX),
        detail=clip(detail, DETAIL_MAX),
        refs=refs or {},
        expected_paise=expected_paise,
        actual_paise=actual_paise,
    )


async def record(conn: AsyncConnection, seen: Sequence[Observed], at: datetime) -> Recorded:
    """Each observation becomes a finding, or updates the one it is already (keyed on
    source + kind + reference): never a second row for the same mismatch. A resolved one
    seen again is open again, unless it was resolved after `at` (the run started before the
    fix); an explained one stays explained. Findings not seen this time are left as they
    are: only a person closes a finding."""
    opened = again = reopened = 0
    for obs in seen:
        seen_before = await repo.seen_again(conn, obs, at, RECONCILER, RECONCILER)
        if seen_before is None:
            made = await repo.open_new(conn, obs, at, RECONCILER, RECONCILER)
            if made is None:  # another run opened it in between
                seen_before = await repo.seen_again(conn, obs, at, RECONCILER, RECONCILER)
            else:
                opened += 1
                continue
        if seen_before is not None and seen_before[1]:
            reopened += 1
        else:
            again += 1
    return Recorded(opened=opened, seen_again=again, reopened=reopened)


async def findings(
    conn: AsyncConnection,
    *,
    state: State | None = None,
    source: Source | None = None,
    kind: Kind | None = None,
    after: tuple[datetime, uuid.UUID] | None = None,
    limit: int = 50,
) -> list[Finding]:
    """A page of findings, newest first (`after`: the last one's (created_at, id))."""
    return await repo.page(
        conn,
        state=state.value if state else None,
        source=source.value if source else None,
        kind=kind.value if kind else None,
        after=after,
        limit=limit,
    )


async def finding(conn: AsyncConnection, finding_id: uuid.UUID) -> tuple[Finding, list[Transition]]:
    """One finding and its trail, oldest transition first."""
    found = await repo.get(conn, finding_id)
    if found is None:
        raise FindingNotFound(f"finding {finding_id} does not exist")
    return found, await repo.transitions(conn, finding_id)


async def explain(
    conn: AsyncConnection, caller: Principal, finding_id: uuid.UUID, note: str
) -> Finding:
    """An open finding is an expected difference, for the reason in `note`."""
    return await _move(conn, caller, finding_id, State.explained, note)


async def resolve(
    conn: AsyncConnection, caller: Principal, finding_id: uuid.UUID, note: str
) -> Finding:
    """An open or explained finding was dealt with, as `note` says (the fix itself is made
    elsewhere, by its own audited route or command: the reconciler never fixes)."""
    return await _move(conn, caller, finding_id, State.resolved, note)


async def _move(
    conn: AsyncConnection, caller: Principal, finding_id: uuid.UUID, to: State, note: str
) -> Finding:
    was = await repo.move(
        conn,
        finding_id,
        to_state=to.value,
        from_states=sorted(s.value for s in MOVES[to]),
        actor=caller.sub,
        role=caller.role.value,
        note=note,
    )
    if was is None:
        current = await repo.get(conn, finding_id)
        if current is None:
            raise FindingNotFound(f"finding {finding_id} does not exist")
        raise FindingStateConflict(
            f"finding {finding_id} is {current.state}; it cannot be {to.value} from there",
            state=current.state,
        )
    await audit.record(
        conn,
        caller,
        action=f"reconciliation.finding.{to.value}",
        target_type="reconciliation_finding",
        target_id=str(finding_id),
        details={"note": note},
        before={"state": was},
        after={"state": to.value},
    )
    moved = await repo.get(conn, finding_id)
    assert moved is not None
    return moved


async def refresh_open_gauge(conn: AsyncConnection) -> int:
    """`billing_reconciliation_findings_open{source,kind}` as the table says now (zero where
    none); the total."""
    counts = await repo.open_counts(conn)
    for source in Source:
        for kind in Kind:
            RECONCILIATION_FINDINGS_OPEN.labels(source.value, kind.value).set(
                counts.get((source.value, kind.value), 0)
            )
    return sum(counts.values())
