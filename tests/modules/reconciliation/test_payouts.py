"""Payouts reconciliation against the sandbox's Payouts over HTTP: a settlement paid with
its UTR reconciles clean; a reversal whose webhook was lost (Cashfree REVERSED, ours paid)
and a UTR that is not Cashfree's are findings; once the sync applies the reversal and the
UTR is right again, the next run sees no mismatch, but the findings stay open until finance
resolves them (through the service a console calls): the reconciler never closes one."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from commdesk_billing import wiring
from commdesk_billing.db.engine import in_transaction
from commdesk_billing.gateway.sandbox.config import DEV_PAYOUT_CLIENT_ID, DEV_PAYOUT_CLIENT_SECRET
from commdesk_billing.modules.reconciliation import service
from commdesk_billing.modules.reconciliation.model import RunSummary, Source, State
from commdesk_billing.modules.reconciliation.runner import run
from commdesk_billing.modules.settlements.jobs import sync_open_settlements
from commdesk_billing.security.jwt import Principal, Role
from tests.harness.stack import Stack, StackFactory
from tests.modules.settlements.conftest import PAYOUT_STEP_S, TERMS
from tests.modules.settlements.helpers import (
    Payouts,
    earn,
    make_payee,
    scalar,
    settle_run,
    wait_attempts,
    wait_status,
)


@pytest.fixture
async def world(stacks: StackFactory) -> AsyncIterator[tuple[Stack, Payouts]]:
    stack = await stacks(**TERMS, reconciliation_grace_s=0.0)
    async with httpx.AsyncClient(
        base_url=stack.sandbox_url,
        timeout=30,
        headers={"x-client-id": DEV_PAYOUT_CLIENT_ID, "x-client-secret": DEV_PAYOUT_CLIENT_SECRET},
    ) as client:
        control = Payouts(client)
        await control.configure(
            webhook_url=f"{stack.api_url}/v1/webhooks/cashfree-payouts",
            step_s=PAYOUT_STEP_S,
            pending_s=PAYOUT_STEP_S,
            reversal_s=PAYOUT_STEP_S,
        )
        yield stack, control


async def _reconcile(stack: Stack) -> RunSummary:
    return await run(
        stack.engine, stack.settings, checks=wiring.verify_checks(), sources=[Source.payouts]
    )


async def _paid(stack: Stack, payouts: Payouts, paise: int) -> tuple[uuid.UUID, str]:
    """A payee earns `paise`, is settled, and Cashfree pays it: (settlement id, transfer id)."""
    payee = await make_payee(stack.engine, stack.settings)
    await earn(stack.engine, payee, paise)
    [outcome] = await settle_run(
        stack.engine,
        stack.settings,
        by="test",
        payee_id=payee.id,
        period=f"test:{uuid.uuid4().hex}",
        cut_off=datetime.now(UTC),
    )
    assert outcome.settlement is not None
    sid = outcome.settlement.id
    await wait_attempts(stack.engine, sid, 1)
    await payouts.advance(3 * PAYOUT_STEP_S)
    await wait_status(stack.engine, sid, {"paid"})
    return sid, f"stl{sid.hex}a1"


async def _findings(stack: Stack) -> dict[str, dict[str, Any]]:
    async with stack.engine.connect() as conn:
        page = await service.findings(conn, source=Source.payouts)
    return {f.reference: f.__dict__ for f in page}


async def test_payout_status_and_utr_mismatches_are_found_and_only_a_person_closes_them(
    world: tuple[Stack, Payouts],
) -> None:
    stack, payouts = world
    await payouts.faults(reverse_transfers=0, webhook_drop_rate=0.0)
    _, kept = await _paid(stack, payouts, 30_000)
    [clean] = (await _reconcile(stack)).sources
    assert (clean.checked, clean.matched, clean.mismatches, clean.error) == (1, 1, 0, None)

    # A reversal nobody told us of: paid here, REVERSED at Cashfree.
    await payouts.faults(reverse_transfers=1)
    _, reversed_ = await _paid(stack, payouts, 40_000)
    await payouts.faults(webhook_drop_rate=1.0)
    await payouts.advance(2 * PAYOUT_STEP_S)
    [t] = await payouts.transfers({reversed_})
    assert t["status"] == "REVERSED"
    # A UTR of ours that is not the one Cashfree paid with.
    utr = await scalar(
        stack.engine, "SELECT utr FROM settlement_transfers WHERE transfer_id = :t", t=kept
    )
    await stack.execute(
        "UPDATE settlement_transfers SET utr = 'FORGED0000000001' WHERE transfer_id = :t", t=kept
    )

    [found] = (await _reconcile(stack)).sources
    assert (found.checked, found.matched, found.mismatches, found.opened) == (2, 0, 2, 2)
    rows = await _findings(stack)
    assert set(rows) == {f"transfer:{kept}", f"transfer:{reversed_}"}
    status = rows[f"transfer:{reversed_}"]
    assert status["kind"] == "payout_mismatch" and status["state"] == "open"
    assert status["refs"]["ours"]["status"] == "success"
    assert status["refs"]["cashfree"]["status"] == "REVERSED"
    wrong_utr = rows[f"transfer:{kept}"]
    assert wrong_utr["kind"] == "payout_mismatch"
    assert (wrong_utr["refs"]["ours"]["utr"], wrong_utr["refs"]["cashfree"]["utr"]) == (
        "FORGED0000000001",
        utr,
    )
    assert wrong_utr["expected_paise"] == wrong_utr["actual_paise"]  # the amount agrees

    # Put right by their own paths: the UTR restored, the sync applies the reversal.
    await stack.execute(
        "UPDATE settlement_transfers SET utr = :u WHERE transfer_id = :t", u=utr, t=kept
    )
    await sync_open_settlements(
        stack.engine, stack.settings, now=datetime.now(UTC) + timedelta(hours=7)
    )
    await wait_status(stack.engine, uuid.UUID(reversed_[3:35]), {"reversed"})
    [after] = (await _reconcile(stack)).sources
    assert (after.checked, after.matched, after.mismatches, after.opened) == (2, 2, 0, 0)
    still = await _findings(stack)
    assert {r["state"] for r in still.values()} == {State.open}  # never closed silently

    finance = Principal(sub="fin-9", role=Role.finance_admin, scopes=frozenset())
    for row in still.values():
        done = await in_transaction(
            stack.engine,
            lambda c, fid=row["id"]: service.resolve(c, finance, fid, "applied by the sync"),
        )
        assert done.state == State.resolved
    async with stack.engine.connect() as conn:
        assert await service.refresh_open_gauge(conn) == 0
