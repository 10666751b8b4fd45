"""Gateway reconciliation against the Cashfree sandbox over HTTP: real purchases and a
refund reconcile clean (Cashfree's fee and the GST on it explained, not findings); then each
kind of mismatch is planted through the sandbox's control API (or made by paying an order
we never opened) and found, once, and a person explains and resolves findings through the
API with the trail and the audit log to show for it."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
from sqlalchemy import text

from commdesk_billing import wiring
from commdesk_billing.modules.reconciliation.jobs import InBackground
from commdesk_billing.modules.reconciliation.model import RunSummary, Source
from commdesk_billing.modules.reconciliation.runner import run
from commdesk_billing.security.jwt import Role
from tests.harness.stack import Stack, StackFactory

PROBLEM = "application/problem+json"


async def _reconcile(stack: Stack, *sources: Source, **settings: Any) -> RunSummary:
    return await run(
        stack.engine,
        stack.settings.model_copy(update=settings),
        checks=wiring.verify_checks(),
        sources=list(sources) or list(Source),
    )


async def _cf_payment(stack: Stack, payment_id: str) -> str:
    found = await stack.scalar(
        "SELECT cashfree_payment_id FROM payments WHERE id = :id", id=uuid.UUID(payment_id)
    )
    assert found
    return str(found)


async def _plant(stack: Stack, event_id: str, **body: Any) -> dict[str, Any]:
    r = await stack.sandbox.post(f"/_sandbox/recon/events/{event_id}", json=body)
    assert r.status_code == 200, r.text
    return dict(r.json())


async def _foreign_capture(stack: Stack) -> tuple[str, str]:
    """An order opened at Cashfree by someone else with our keys (not through us), paid:
    (order id, cf_payment_id)."""
    order_id = f"foreign_{uuid.uuid4().hex[:12]}"
    r = await stack.sandbox.post(
        "/pg/orders",
        json={
            "order_id": order_id,
            "order_amount": 777.00,
            "order_currency": "INR",
            "customer_details": {"customer_id": "someone", "customer_phone": "9999999999"},
        },
    )
    assert r.status_code == 200, r.text
    session = r.json()["payment_session_id"]
    await stack.pay(
        {
            "checkout_url": f"{stack.sandbox_url}/pg/view/checkout?payment_session_id={session}",
            "payment_session_id": session,
        }
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        payments = (await stack.sandbox.get(f"/pg/orders/{order_id}/payments")).json()
        paid = [p for p in payments if p["payment_status"] == "SUCCESS"]
        if paid:
            return order_id, str(paid[0]["cf_payment_id"])
        await asyncio.sleep(0.1)
    raise AssertionError("the foreign order was never paid")


def _h(stack: Stack, role: Role, sub: str | None = None, key: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {stack.token(sub or f'{role.value}-1', role)}"}
    if key is not None:
        headers["Idempotency-Key"] = key
    return headers


async def _open_findings(stack: Stack) -> list[dict[str, Any]]:
    """Every open finding, read page by page (2 a page) as the auditor."""
    out: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"state": "open", "limit": 2}
        if cursor:
            params["cursor"] = cursor
        r = await stack.api.get(
            "/v1/reconciliation/findings", params=params, headers=_h(stack, Role.auditor)
        )
        assert r.status_code == 200, r.text
        out += r.json()["data"]
        cursor = r.json()["next_cursor"]
        if cursor is None:
            return out


async def test_each_gateway_mismatch_is_found_once_and_explained_or_resolved(
    stacks: StackFactory,
) -> None:
    stack = await stacks(reconciliation_grace_s=0.0)
    bought = [await stack.credited() for _ in range(5)]
    payments = [p for _, p in bought]
    refund = await stack.refund(payments[0]["id"])
    assert refund.status_code == 202, refund.text
    await stack.wait_refund(refund.json()["id"], {"SUCCESS"})

    # --- clean: a demo-like run (T+3: nothing is late yet) finds nothing --------------
    # The scheduler's own job, as `wiring.jobs()` has it.
    job = {j.name: j for j in wiring.jobs(stack.settings, stack.engine, None)}["reconcile"]  # type: ignore[arg-type]
    assert isinstance(job.run, InBackground)
    assert await job.run() == "started"  # the scheduler's loop goes on at once
    assert await job.run() == "still running"  # and a second run is not started over it
    assert job.run.task is not None
    clean = await job.run.task
    by = {s.source: s for s in clean.sources}
    gateway = by[Source.gateway]
    assert (gateway.checked, gateway.matched, gateway.mismatches, gateway.opened) == (6, 6, 0, 0)
    # Each captured payment carries Cashfree's fee and GST on it: explained, not findings.
    assert gateway.explained_differences == 5
    assert by[Source.internal].mismatches == 0 and by[Source.internal].error is None
    assert (by[Source.payouts].checked, by[Source.payouts].error) == (0, None)
    assert clean.open_findings == 0

    # --- plant one of each kind -------------------------------------------------------
    cf = [await _cf_payment(stack, p["id"]) for p in payments]
    amount = int(payments[1]["amount_paise"])
    await _plant(stack, cf[1], action="amount", amount_paise=amount - 1_000)
    await _plant(stack, cf[2], action="drop")
    await _plant(stack, cf[3], action="hold")
    foreign_order, foreign_cf = await _foreign_capture(stack)
    settled = await stack.sandbox.post("/_sandbox/settlements/run")
    assert settled.status_code == 200 and settled.json()["cf_settlement_id"], settled.text
    again = await _plant(stack, cf[4], action="settle_again")
    first_settlement = str(settled.json()["cf_settlement_id"])

    # T+0 here: anything captured and not settled is late.
    found = await _reconcile(stack, Source.gateway, reconciliation_settle_days=0)
    [g] = found.sources
    assert (g.checked, g.mismatches, g.opened, g.seen_again) == (7, 5, 5, 0)
    assert found.open_findings == 5
    rows = {(f["kind"], f["reference"]): f for f in await _open_findings(stack)}
    orders = [p["order_id"] for p in payments]
    assert set(rows) == {
        ("amount_differs", f"payment:{orders[1]}"),
        ("missing_at_cashfree", f"payment:{orders[2]}"),
        ("unsettled", f"payment:{orders[3]}"),
        ("settled_twice", f"payment:{cf[4]}"),
        ("missing_here", f"payment:{foreign_cf}"),
    }
    differs = rows[("amount_differs", f"payment:{orders[1]}")]
    assert (differs["expected_paise"], differs["actual_paise"]) == (amount, amount - 1_000)
    missing = rows[("missing_at_cashfree", f"payment:{orders[2]}")]
    assert (missing["expected_paise"], missing["actual_paise"]) == (
        int(payments[2]["amount_paise"]),
        None,
    )
    assert rows[("missing_here", f"payment:{foreign_cf}")]["actual_paise"] == 77_700
    assert rows[("missing_here", f"payment:{foreign_cf}")]["references"]["order_id"] == (
        foreign_order
    )
    twice = rows[("settled_twice", f"payment:{cf[4]}")]
    assert twice["references"]["cf_settlement_ids"] == sorted(
        [first_settlement, str(again["cf_settlement_id"])]
    )
    assert twice["actual_paise"] == 2 * twice["expected_paise"]
    assert all(f["source"] == "gateway" and f["seen_count"] == 1 for f in rows.values())

    # --- the next run: the same mismatches, no new finding ----------------------------
    [g2] = (await _reconcile(stack, Source.gateway, reconciliation_settle_days=0)).sources
    assert (g2.mismatches, g2.opened, g2.seen_again, g2.reopened) == (5, 0, 5, 0)
    assert await stack.scalar("SELECT count(*) FROM reconciliation_findings") == 5

    # --- who may read and act ---------------------------------------------------------
    late = rows[("unsettled", f"payment:{orders[3]}")]["id"]
    wrong = differs["id"]
    r = await stack.api.get("/v1/reconciliation/findings", headers=_h(stack, Role.support))
    assert (r.status_code, r.headers["content-type"]) == (403, PROBLEM)
    r = await stack.api.get(
        "/v1/reconciliation/findings", params={"kind": "unsettled"}, headers=_h(stack, Role.auditor)
    )
    assert [f["id"] for f in r.json()["data"]] == [late]
    r = await stack.api.get(
        "/v1/reconciliation/findings",
        params={"cursor": "nonsense"},
        headers=_h(stack, Role.auditor),
    )
    assert (r.status_code, r.json()["code"]) == (422, "invalid_cursor")
    note = {"note": "Cashfree holds it for KYC; released next cycle (ticket 4411)"}
    r = await stack.api.post(
        f"/v1/reconciliation/findings/{late}/explain",
        json=note,
        headers=_h(stack, Role.auditor, key=uuid.uuid4().hex),
    )
    assert r.status_code == 403
    r = await stack.api.post(
        f"/v1/reconciliation/findings/{late}/explain",
        json=note,
        headers=_h(stack, Role.finance_admin),
    )
    assert (r.status_code, r.json()["code"]) == (400, "idempotency_key_required")
    r = await stack.api.post(
        f"/v1/reconciliation/findings/{late}/explain",
        json={"note": ""},
        headers=_h(stack, Role.finance_admin, key=uuid.uuid4().hex),
    )
    assert r.status_code == 422

    # --- explain, replayed by its key; a second explain is a conflict -----------------
    key = uuid.uuid4().hex
    first = await stack.api.post(
        f"/v1/reconciliation/findings/{late}/explain",
        json=note,
        headers=_h(stack, Role.finance_admin, "fin-7", key),
    )
    assert first.status_code == 200, first.text
    assert first.json()["state"] == "explained"
    replay = await stack.api.post(
        f"/v1/reconciliation/findings/{late}/explain",
        json=note,
        headers=_h(stack, Role.finance_admin, "fin-7", key),
    )
    assert (replay.status_code, replay.headers.get("idempotent-replayed")) == (200, "true")
    assert replay.json() == first.json()
    r = await stack.api.post(
        f"/v1/reconciliation/findings/{late}/explain",
        json=note,
        headers=_h(stack, Role.finance_admin, "fin-7", uuid.uuid4().hex),
    )
    assert (r.status_code, r.json()["code"]) == (409, "finding_state_conflict")

    # --- resolve; the trail names everyone ------------------------------------------------
    r = await stack.api.post(
        f"/v1/reconciliation/findings/{wrong}/resolve",
        json={"note": "Cashfree corrected the report (ticket 4412)"},
        headers=_h(stack, Role.finance_admin, "fin-8", uuid.uuid4().hex),
    )
    assert r.status_code == 200, r.text
    trail = [(t["from_state"], t["to_state"], t["actor"]) for t in r.json()["transitions"]]
    assert trail == [(None, "open", "reconciler"), ("open", "resolved", "fin-8")]
    async with stack.engine.connect() as conn:
        audited = (
            await conn.execute(
                text(
                    "SELECT action, actor_sub, before, after FROM audit_logs"
                    " WHERE target_type = 'reconciliation_finding' ORDER BY created_at"
                )
            )
        ).all()
    assert [tuple(a) for a in audited] == [
        ("reconciliation.finding.explained", "fin-7", {"state": "open"}, {"state": "explained"}),
        ("reconciliation.finding.resolved", "fin-8", {"state": "open"}, {"state": "resolved"}),
    ]

    # --- the mismatch is still there: resolved is open again; explained stays ---------
    [g3] = (await _reconcile(stack, Source.gateway, reconciliation_settle_days=0)).sources
    assert (g3.opened, g3.seen_again, g3.reopened) == (0, 4, 1)
    r = await stack.api.get(f"/v1/reconciliation/findings/{wrong}", headers=_h(stack, Role.auditor))
    assert r.json()["state"] == "open" and r.json()["seen_count"] == 3
    assert [(t["from_state"], t["to_state"], t["actor"]) for t in r.json()["transitions"]][-1] == (
        "resolved",
        "open",
        "reconciler",
    )
    r = await stack.api.get(f"/v1/reconciliation/findings/{late}", headers=_h(stack, Role.auditor))
    assert r.json()["state"] == "explained"
    r = await stack.api.get(
        f"/v1/reconciliation/findings/{uuid.uuid4()}", headers=_h(stack, Role.auditor)
    )
    assert (r.status_code, r.json()["code"]) == (404, "finding_not_found")


async def test_the_sandbox_refuses_plants_it_cannot_make(stack: Stack) -> None:
    r = await stack.sandbox.post("/_sandbox/recon/events/nope", json={"action": "drop"})
    assert (r.status_code, r.json()["code"]) == (404, "event_not_found")
    _, payment = await stack.credited()
    cf = await _cf_payment(stack, payment["id"])
    r = await stack.sandbox.post(f"/_sandbox/recon/events/{cf}", json={"action": "settle_again"})
    assert (r.status_code, r.json()["code"]) == (409, "event_unsettled")
    r = await stack.sandbox.post(f"/_sandbox/recon/events/{cf}", json={"action": "amount"})
    assert r.status_code == 400
    r = await stack.sandbox.post(f"/_sandbox/recon/events/{cf}", json={"action": "melt"})
    assert r.status_code == 400
    async with httpx.AsyncClient(base_url=stack.sandbox_url) as anonymous:
        r = await anonymous.post(f"/_sandbox/recon/events/{cf}", json={"action": "drop"})
        assert r.status_code == 401
