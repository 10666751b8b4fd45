"""SQL on the findings and their transitions. Every change of a finding's state is one
statement that also writes its transition (a CTE), so no state changes without its row in
the trail."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.db.sql import sql
from commdesk_billing.modules.reconciliation.model import Finding, Observed, Transition

_COLS = """id, source, kind, reference, refs, expected_paise, actual_paise, detail, state,
    seen_count, first_seen_at, last_seen_at, created_at, updated_at"""


def _finding(row: Any) -> Finding:
    m = dict(row._mapping)
    refs = m["refs"]
    m["refs"] = json.loads(refs) if isinstance(refs, str) else dict(refs or {})
    return Finding(**m)


async def open_new(
    conn: AsyncConnection, obs: Observed, at: datetime, actor: str, role: str
) -> uuid.UUID | None:
    """A new open finding and its opening transition; None: (source, kind, reference) has
    a finding already."""
    found = (
        await conn.execute(
            sql("""
            WITH f AS (
                INSERT INTO reconciliation_findings (id, source, kind, reference, refs,
                    expected_paise, actual_paise, detail, state, first_seen_at, last_seen_at,
                    created_at, updated_at)
                VALUES (:id, :source, :kind, :ref, CAST(:refs AS jsonb), :exp, :act, :detail,
                        'open', :at, :at, :at, :at)
                ON CONFLICT (source, kind, reference) DO NOTHING
                RETURNING id),
            t AS (
                INSERT INTO reconciliation_finding_transitions
                    (id, finding_id, from_state, to_state, actor, actor_role, note)
                SELECT :tid, f.id, NULL, 'open', :actor, :role, :detail FROM f)
            SELECT id FROM f"""),
            {
                "id": uuid.uuid4(),
                "tid": uuid.uuid4(),
                "source": obs.source.value,
                "kind": obs.kind.value,
                "ref": obs.reference,
                "refs": json.dumps(obs.refs, default=str),
                "exp": obs.expected_paise,
                "act": obs.actual_paise,
                "detail": obs.detail,
                "at": at,
                "actor": actor,
                "role": role,
            },
        )
    ).first()
    return None if found is None else found.id


async def seen_again(
    conn: AsyncConnection, obs: Observed, at: datetime, actor: str, role: str
) -> tuple[str, bool] | None:
    """The finding of (source, kind, reference) seen by another run: its figures as now
    seen, `seen_count` up; a resolved one is open again (with its transition) if it was
    resolved before `at`, the run's start. A run that started before a person resolved the
    finding saw the world before their fix: it must not undo their word (the next run, if
    the mismatch is still there, opens it again). The state it was in and whether it was
    opened again, or None when there is no such finding."""
    found = (
        await conn.execute(
            sql("""
            WITH before AS (
                SELECT id, state FROM reconciliation_findings
                 WHERE source = :source AND kind = :kind AND reference = :ref FOR UPDATE),
            d AS (
                -- A resolved finding's updated_at is when it was resolved: a seen_again
                -- that leaves it resolved does not touch it.
                SELECT r.id, b.state AS was,
                       (b.state = 'resolved' AND r.updated_at <= :at) AS reopen
                  FROM reconciliation_findings r JOIN before b ON b.id = r.id),
            f AS (
                UPDATE reconciliation_findings r
                   SET seen_count = r.seen_count + 1, last_seen_at = greatest(:at, r.last_seen_at),
                       refs = CAST(:refs AS jsonb), expected_paise = :exp, actual_paise = :act,
                       detail = :detail,
                       state = CASE WHEN d.reopen THEN 'open' ELSE r.state END,
                       updated_at = CASE WHEN d.was = 'resolved' AND NOT d.reopen
                                         THEN r.updated_at ELSE :at END
                  FROM d WHERE r.id = d.id
                RETURNING r.id, d.was, d.reopen),
            t AS (
                INSERT INTO reconciliation_finding_transitions
                    (id, finding_id, from_state, to_state, actor, actor_role, note)
                SELECT :tid, f.id, 'resolved', 'open', :actor, :role,
                       'seen again after it was resolved: ' || :detail
                  FROM f WHERE f.reopen)
            SELECT was, reopen FROM f"""),
            {
                "tid": uuid.uuid4(),
                "source": obs.source.value,
                "kind": obs.kind.value,
                "ref": obs.reference,
                "refs": json.dumps(obs.refs, default=str),
                "exp": obs.expected_paise,
                "act": obs.actual_paise,
                "detail": obs.detail,
                "at": at,
                "actor": actor,
                "role": role,
            },
        )
    ).first()
    return None if found is None else (str(found.was), bool(found.reopen))


async def move(
    conn: AsyncConnection,
    finding_id: uuid.UUID,
    *,
    to_state: str,
    from_states: list[str],
    actor: str,
    role: str,
    note: str,
) -> str | None:
    """The finding moved to `to_state` if it is in one of `from_states`, with its transition;
    the state it left, or None when it was in none of them (or does not exist)."""
    found = (
        await conn.execute(
            sql("""
            WITH before AS (
                SELECT id, state FROM reconciliation_findings
                 WHERE id = :id AND state = ANY(CAST(:froms AS text[])) FOR UPDATE),
            f AS (
                UPDATE reconciliation_findings r SET state = :to, updated_at = now()
                  FROM before b WHERE r.id = b.id
                RETURNING r.id, b.state AS was),
            t AS (
                INSERT INTO reconciliation_finding_transitions
                    (id, finding_id, from_state, to_state, actor, actor_role, note)
                SELECT :tid, f.id, f.was, :to, :actor, :role, :note FROM f)
            SELECT was FROM f"""),
            {
                "id": finding_id,
                "tid": uuid.uuid4(),
                "to": to_state,
                "froms": from_states,
                "actor": actor,
                "role": role,
                "note": note,
            },
        )
    ).first()
    return None if found is None else str(found.was)


async def get(conn: AsyncConnection, finding_id: uuid.UUID) -> Finding | None:
    row = (
        await conn.execute(
            sql(f"SELECT {_COLS} FROM reconciliation_findings WHERE id = :id"), {"id": finding_id}
        )
    ).first()
    return None if row is None else _finding(row)


async def page(
    conn: AsyncConnection,
    *,
    state: str | None,
    source: str | None,
    kind: str | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[Finding]:
    """Findings newest first, from after the cursor's (created_at, id)."""
    rows = await conn.execute(
        sql(f"""
        SELECT {_COLS} FROM reconciliation_findings
         WHERE (CAST(:state AS text) IS NULL OR state = :state)
           AND (CAST(:source AS text) IS NULL OR source = :source)
           AND (CAST(:kind AS text) IS NULL OR kind = :kind)
           AND (CAST(:at AS timestamptz) IS NULL
                OR (created_at, id) < (CAST(:at AS timestamptz), CAST(:id AS uuid)))
         ORDER BY created_at DESC, id DESC LIMIT :n"""),
        {
            "state": state,
            "source": source,
            "kind": kind,
            "at": after[0] if after else None,
            "id": after[1] if after else None,
            "n": limit,
        },
    )
    return [_finding(r) for r in rows]


async def transitions(conn: AsyncConnection, finding_id: uuid.UUID) -> list[Transition]:
    rows = await conn.execute(
        sql("""
        SELECT id, finding_id, from_state, to_state, actor, actor_role, note, created_at
          FROM reconciliation_finding_transitions
         WHERE finding_id = :id ORDER BY created_at, id"""),
        {"id": finding_id},
    )
    return [Transition(**dict(r._mapping)) for r in rows]


async def open_counts(conn: AsyncConnection) -> dict[tuple[str, str], int]:
    """Open findings by (source, kind)."""
    rows = await conn.execute(
        sql("""
        SELECT source, kind, count(*) AS n FROM reconciliation_findings
         WHERE state = 'open' GROUP BY source, kind""")
    )
    return {(r.source, r.kind): int(r.n) for r in rows}
