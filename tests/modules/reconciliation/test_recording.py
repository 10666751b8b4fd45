"""Recording what a run saw: a finding a person resolved while a run was going is not opened
again by that run, which saw the world before the fix; the next run that sees it does."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from commdesk_billing.db.engine import in_transaction
from commdesk_billing.modules.reconciliation import service
from commdesk_billing.modules.reconciliation.model import Kind, Observed, Recorded, Source
from commdesk_billing.security.jwt import Principal, Role

FINANCE = Principal(sub="fin-recording", role=Role.finance_admin, scopes=frozenset())


async def _record(engine: AsyncEngine, obs: Observed, at: datetime) -> Recorded:
    return await in_transaction(engine, lambda conn: service.record(conn, [obs], at))


async def _state(engine: AsyncEngine, reference: str) -> tuple[uuid.UUID, str, int, int]:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT f.id, f.state, f.seen_count,"
                    " (SELECT count(*) FROM reconciliation_finding_transitions t"
                    "   WHERE t.finding_id = f.id) AS moves"
                    " FROM reconciliation_findings f WHERE reference = :r"
                ),
                {"r": reference},
            )
        ).one()
    return row.id, row.state, row.seen_count, row.moves


async def test_a_run_older_than_the_resolution_does_not_open_it_again(
    engine: AsyncEngine,
) -> None:
    reference = f"order:recording-{uuid.uuid4().hex[:8]}"
    obs = Observed(
        source=Source.gateway,
        kind=Kind.amount_differs,
        reference=reference,
        detail="net differs by 100 paise",
        expected_paise=10_000,
        actual_paise=9_900,
    )
    first_run = datetime.now(UTC)
    assert (await _record(engine, obs, first_run)).opened == 1
    finding_id, state, _, _ = await _state(engine, reference)
    assert state == "open"

    # A second run starts, finance resolves the finding while it runs, then the run records.
    stale_run = datetime.now(UTC)
    await in_transaction(
        engine, lambda conn: service.resolve(conn, FINANCE, finding_id, "fixed at Cashfree")
    )
    stale = await _record(engine, obs, stale_run)
    assert (stale.opened, stale.seen_again, stale.reopened) == (0, 1, 0)
    _, state, seen, moves = await _state(engine, reference)
    assert (state, seen, moves) == ("resolved", 2, 2)  # opened, resolved: nothing undone

    # The same stale run's start recorded again (another source of the same run): still so.
    assert (await _record(engine, obs, stale_run)).reopened == 0
    assert (await _state(engine, reference))[1] == "resolved"

    # A run that starts after the resolution and still sees the mismatch opens it again.
    later = await _record(engine, obs, datetime.now(UTC) + timedelta(seconds=1))
    assert (later.opened, later.seen_again, later.reopened) == (0, 0, 1)
    _, state, seen, moves = await _state(engine, reference)
    assert (state, seen, moves) == ("open", 4, 3)
