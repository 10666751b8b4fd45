"""Internal reconciliation: `ledger verify`'s invariants on a schedule. A tampered ledger
(in a database of its own) becomes findings, each check's count is in the metric, the
command exits 1 while any is open, and a second run adds no finding."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import asyncpg
from prometheus_client import REGISTRY
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from commdesk_billing import wiring
from commdesk_billing.config import Settings
from commdesk_billing.db.engine import in_transaction
from commdesk_billing.modules.reconciliation.model import Source
from commdesk_billing.modules.reconciliation.runner import run
from commdesk_billing.modules.wallet import service as ws
from tests.conftest import new_wallet
from tests.harness.databases import _dsn


def _reconcile_cli(url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BILLING_DATABASE_URL": url, "BILLING_LOG_JSON": "false"}
    return subprocess.run(
        [sys.executable, "-m", "commdesk_billing.cli", "reconcile", "--source", "internal"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def _tamper(url: str) -> None:
    """Move one credit between the two legs of a debit: balanced, the wallet row unchanged;
    only the wallet's hash chain can tell (a superuser's attack)."""
    conn = await asyncpg.connect(_dsn(url))
    try:
        async with conn.transaction():
            await conn.execute(
                "ALTER TABLE ledger_entries DISABLE TRIGGER ledger_entries_append_only"
            )
            await conn.execute(
                """
                UPDATE ledger_entries
                   SET amount = amount + CASE WHEN wallet_id IS NULL THEN -1 ELSE 1 END
                 WHERE journal_id = (SELECT journal_id FROM wallet_transactions
                                      WHERE idempotency_key = 'recon-d1')"""
            )
            await conn.execute(
                "ALTER TABLE ledger_entries ENABLE TRIGGER ledger_entries_append_only"
            )
    finally:
        await conn.close()


def _violations() -> dict[str, float]:
    return {
        s.labels["check"]: s.value
        for metric in REGISTRY.collect()
        if metric.name == "billing_ledger_invariant_violations"
        for s in metric.samples
    }


async def _findings(engine: AsyncEngine) -> list[tuple[str, str, str, int]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT kind, reference, state, seen_count FROM reconciliation_findings"
                " WHERE source = 'internal' ORDER BY reference"
            )
        )
        return [tuple(r) for r in rows]  # type: ignore[misc]


async def test_a_tampered_ledger_is_found_once_and_kept_open(
    scratch_database_url: str, scratch_engine: AsyncEngine
) -> None:
    wallet = await new_wallet(scratch_engine, 500)
    await in_transaction(
        scratch_engine,
        lambda c: ws.consume_credits(
            c, wallet_id=wallet.id, credits=120, idempotency_key="recon-d1", reason="spend"
        ),
    )
    clean = await asyncio.to_thread(_reconcile_cli, scratch_database_url)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "open findings: 0" in clean.stdout
    n_checks = len(wiring.verify_checks())
    # Every check ran and agreed: checked = matched = the number of checks, nothing opened.
    [row] = [line.split() for line in clean.stdout.splitlines() if line.startswith("internal")]
    assert row == ["internal", str(n_checks), str(n_checks), "0", "0", "0", "0", "0", "ok"]

    await _tamper(scratch_database_url)
    settings = Settings(database_url=scratch_database_url)
    runs = {"source": "internal", "outcome": "findings"}
    runs_before = REGISTRY.get_sample_value("billing_reconciliation_runs_total", runs) or 0.0
    summary = await run(
        scratch_engine, settings, checks=wiring.verify_checks(), sources=[Source.internal]
    )
    [internal] = summary.sources
    assert internal.error is None
    assert internal.mismatches >= 1 and internal.opened == internal.mismatches
    assert summary.open_findings == internal.opened
    found = await _findings(scratch_engine)
    assert len(found) == internal.opened
    assert all(kind == "invariant_violation" and state == "open" for kind, _, state, _ in found)
    assert any(
        ref.startswith("wallet_chain:") and f"wallet:{wallet.id}:available" in ref
        for _, ref, _, _ in found
    ), found
    assert REGISTRY.get_sample_value("billing_reconciliation_runs_total", runs) == runs_before + 1
    assert REGISTRY.get_sample_value(
        "billing_reconciliation_findings_open",
        {"source": "internal", "kind": "invariant_violation"},
    ) == float(internal.opened)
    assert (
        REGISTRY.get_sample_value(
            "billing_reconciliation_last_success_timestamp_seconds", {"source": "internal"}
        )
        or 0
    ) > time.time() - 600
    # The metric: each check under its own name, summing to what was found, 0 elsewhere.
    violations = _violations()
    assert {c.name for c in wiring.verify_checks()} <= set(violations)
    assert sum(violations[c.name] for c in wiring.verify_checks()) == internal.mismatches
    assert violations["wallet_chain"] >= 1  # the code too (alerts read codes)

    # The command sees the same faults: exit 1, no new finding, each seen once more.
    dirty = await asyncio.to_thread(_reconcile_cli, scratch_database_url)
    assert dirty.returncode == 1, dirty.stdout + dirty.stderr
    assert f"open findings: {internal.opened}" in dirty.stdout
    again = await _findings(scratch_engine)
    assert [(k, r, s) for k, r, s, _ in again] == [(k, r, s) for k, r, s, _ in found]
    assert all(seen == 2 for _, _, _, seen in again)
