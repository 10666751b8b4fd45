"""Refunds end to end: our API, the refund.processing worker, the Cashfree sandbox (its
refund state machine, `refund_note` outcome switch and refund webhooks), PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
import httpx
import pytest
from sqlalchemy import text

from commdesk_billing.modules.ledger.verify import verify_ledger
from commdesk_billing.modules.refunds.jobs import sync_open_refunds
from commdesk_billing.queues.topology import Names
from commdesk_billing.security.jwt import Role
from tests.harness.stack import Stack


async def _spend(stack: Stack, tok: str, wallet_id: str, credits: int) -> httpx.Response:
    return await stack.api.post(
        f"/v1/wallets/{wallet_id}/debits",
        json={"credits": credits, "reason": "event ticket"},
        headers={"Authorization": f"Bearer {tok}", "Idempotency-Key": uuid.uuid4().hex},
    )


async def _inr(stack: Stack, refund_id: str) -> dict[str, int]:
    """The INR legs the refund posted, by account code."""
    rows: dict[str, int] = {}
    async with stack.engine.connect() as conn:
        for code, amount in (
            await conn.execute(
                text("""
                SELECT a.code, sum(e.amount) FROM ledger_entries e
                  JOIN ledger_journals j ON j.id = e.journal_id
                  JOIN ledger_accounts a ON a.id = e.account_id
                 WHERE j.idempotency_key LIKE :k GROUP BY a.code"""),
                {"k": f"refund:{refund_id}:%"},
            )
        ).all():
            rows[code] = int(amount)
    return rows


async def _lots(stack: Stack, payment_id: str) -> dict[str, tuple[int, int, int]]:
    async with stack.engine.connect() as conn:
        rows = (
            await conn.execute(
                text("""
                SELECT source, credits_remaining, credits_refunded, credits_reserved
                  FROM credit_lots WHERE source_ref = :p"""),
                {"p": payment_id},
            )
        ).all()
    return {r[0]: (int(r[1]), int(r[2]), int(r[3])) for r in rows}


async def test_full_refund_takes_every_credit_back_and_posts_the_journals(stack: Stack) -> None:
    tok, paid = await stack.credited()
    r = await stack.refund(paid["id"])
    assert r.status_code == 202, r.text
    created = r.json()
    assert created["status"] == "CREATED"
    assert (created["amount_paise"], created["base_credits"], created["bonus_credits"]) == (
        30000,
        3000,
        200,
    )
    assert created["taxable_paise"] + created["cgst_paise"] + created["sgst_paise"] == 30000
    # Held at once: nothing left to spend while Cashfree works.
    wallet = await stack.wallet(tok)
    assert (wallet["available_credits"], wallet["locked_credits"]) == (0, 3200)

    done = await stack.wait_refund(created["id"], {"SUCCESS"})
    assert done["cf_refund_id"] and done["refund_arn"]
    wallet = await stack.wallet(tok)
    assert (wallet["available_credits"], wallet["locked_credits"]) == (0, 0)
    assert await _lots(stack, paid["id"]) == {"purchase": (0, 3000, 0), "bonus": (0, 200, 0)}
    payment = await stack.payment(tok, paid["id"])
    assert payment["status"] == "CREDITED"
    assert await stack.scalar(
        "SELECT refunded AND refund_amount_paise = 30000 FROM payments WHERE id = :p",
        p=paid["id"],
    )
    legs = await _inr(stack, created["id"])
    assert legs == {
        "inr:deferred_revenue": 25424,
        "inr:gst_payable": 4576,
        "inr:refunds_payable": 0,  # owed, then paid out: nets to zero
        "inr:gateway_clearing": -30000,
    }
    again = await stack.refund(paid["id"], amount_paise=100)
    assert again.status_code == 422
    assert again.json()["refundable_paise"] == 0


async def test_partial_refunds_add_up_to_the_purchase(stack: Stack) -> None:
    tok, paid = await stack.credited()
    first = await stack.refund(paid["id"], amount_paise=10005)
    assert first.status_code == 202, first.text
    second = await stack.refund(paid["id"], amount_paise=19995)
    assert second.status_code == 202, second.text
    a = await stack.wait_refund(first.json()["id"], {"SUCCESS"})
    b = await stack.wait_refund(second.json()["id"], {"SUCCESS"})
    for field, whole in (
        ("amount_paise", 30000),
        ("taxable_paise", 25424),
        ("cgst_paise", 2288),
        ("sgst_paise", 2288),
        ("igst_paise", 0),
        ("base_credits", 3000),
        ("bonus_credits", 200),
    ):
        assert a[field] + b[field] == whole, field
    # The first took back a credit's worth more than its money, never less.
    assert a["base_credits"] * 10 >= 10005
    wallet = await stack.wallet(tok)
    assert wallet["available_credits"] == 0
    listing = await stack.api.get(
        f"/v1/payments/{paid['id']}/refunds",
        headers={"Authorization": f"Bearer {tok}"},
    )
    assert listing.status_code == 200
    assert [x["id"] for x in listing.json()["data"]] == [b["id"], a["id"]]
    assert listing.json()["refundable_paise"] == 0


async def test_more_than_refundable_is_refused_with_the_refundable_amount(stack: Stack) -> None:
    tok, paid = await stack.credited()
    before = await stack.wallet(tok)
    r = await stack.refund(paid["id"], amount_paise=30001)
    assert r.status_code == 422
    problem = r.json()
    assert r.headers["content-type"].startswith("application/problem+json")
    assert problem["code"] == "refund_exceeds_refundable"
    assert problem["refundable_paise"] == 30000
    assert (
        await stack.scalar("SELECT count(*) FROM refunds WHERE payment_id = :p", p=paid["id"]) == 0
    )
    assert await stack.wallet(tok) == before
    # Bad bodies are problems too, and change nothing.
    for body in ({"reason": "x"}, {"reason": "ok ok", "amount_paise": 0}, {"amount_paise": 500}):
        bad = await stack.api.post(
            f"/v1/payments/{paid['id']}/refunds",
            json=body,
            headers={
                "Authorization": f"Bearer {stack.token('finance-1', Role.finance_admin)}",
                "Idempotency-Key": uuid.uuid4().hex,
            },
        )
        assert bad.status_code == 422, body


async def test_after_partial_consumption_only_the_unconsumed_part_is_refundable(
    stack: Stack,
) -> None:
    tok, paid = await stack.credited()
    wallet = await stack.wallet(tok)
    spent = await _spend(stack, tok, wallet["id"], 1000)
    assert spent.status_code == 201, spent.text
    # FIFO drew the purchase lot: 2000 purchased credits are left, worth 20000 paise.
    r = await stack.refund(paid["id"], amount_paise=20001)
    assert r.status_code == 422 and r.json()["refundable_paise"] == 20000
    ok = await stack.refund(paid["id"])
    assert ok.status_code == 202, ok.text
    body = ok.json()
    assert (body["amount_paise"], body["base_credits"], body["bonus_credits"]) == (20000, 2000, 134)
    await stack.wait_refund(body["id"], {"SUCCESS"})
    wallet = await stack.wallet(tok)
    assert wallet["available_credits"] == 3200 - 1000 - 2000 - 134


@pytest.mark.slow
async def test_a_refund_racing_a_spend_ends_consistent(stack: Stack) -> None:
    for _ in range(6):
        tok, paid = await stack.credited()
        wallet = await stack.wallet(tok)
        spend, refund = await asyncio.gather(
            _spend(stack, tok, wallet["id"], 1500), stack.refund(paid["id"])
        )
        assert refund.status_code == 202, refund.text
        body = refund.json()
        after = await stack.wallet(tok)
        if spend.status_code == 201:
            # The spend drew 1500 purchased credits first: the refund shrank to the rest.
            assert (body["amount_paise"], body["base_credits"], body["bonus_credits"]) == (
                15000,
                1500,
                100,
            )
            assert (after["available_credits"], after["locked_credits"]) == (100, 1600)
        else:
            # The refund held everything first: the spend was refused, nothing drawn.
            assert spend.status_code == 409 and spend.json()["code"] == "insufficient_credits"
            assert body["amount_paise"] == 30000
            assert (after["available_credits"], after["locked_credits"]) == (0, 3200)
        await stack.wait_refund(body["id"], {"SUCCESS"})
    report = await verify_ledger(stack.engine)
    assert report.ok, [str(f) for f in report.findings]


async def test_same_idempotency_key_twice_makes_one_refund(stack: Stack) -> None:
    _, paid = await stack.credited()
    key = uuid.uuid4().hex
    first = await stack.refund(paid["id"], amount_paise=5000, key=key)
    second = await stack.refund(paid["id"], amount_paise=5000, key=key)
    assert first.status_code == second.status_code == 202
    assert second.headers.get("idempotent-replayed") == "true"
    assert first.content == second.content
    other = await stack.refund(paid["id"], amount_paise=6000, key=key)
    assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"
    assert (
        await stack.scalar("SELECT count(*) FROM refunds WHERE payment_id = :p", p=paid["id"]) == 1
    )
    await stack.wait_refund(first.json()["id"], {"SUCCESS"})


async def test_cashfree_failing_a_refund_gives_the_credits_back(stack: Stack) -> None:
    tok, paid = await stack.credited()
    # The sandbox's refund_note switch: FAILED ends the refund CANCELLED, as Cashfree does.
    r = await stack.refund(paid["id"], amount_paise=15000, reason="FAILED")
    assert r.status_code == 202, r.text
    await stack.wait_refund(r.json()["id"], {"CANCELLED"})  # FAILED fails at once
    wallet = await stack.wallet(tok)
    assert (wallet["available_credits"], wallet["locked_credits"]) == (3200, 0)
    assert await _lots(stack, paid["id"]) == {"purchase": (3000, 0, 0), "bonus": (200, 0, 0)}
    assert await _inr(stack, r.json()["id"]) == {}
    # The amount is free again.
    again = await stack.refund(paid["id"])
    assert again.status_code == 202 and again.json()["amount_paise"] == 30000
    await stack.wait_refund(again.json()["id"], {"SUCCESS"})


@pytest.mark.slow
async def test_a_lost_refund_webhook_is_settled_by_the_sync(stack: Stack) -> None:
    tok, paid = await stack.credited()
    await stack.faults(webhook_drop_rate=1.0)
    r = await stack.refund(paid["id"], amount_paise=12000)
    assert r.status_code == 202
    await stack.wait_refund(r.json()["id"], {"PENDING"})
    await asyncio.sleep(1.5)  # the sandbox finished it (refund_delay 0.5 s), and told nobody
    still = await stack.get_refund(r.json()["id"])
    assert still["status"] == "PENDING", f"without its webhook the refund went on: {still}"
    later = datetime.now(UTC) + timedelta(seconds=5)
    assert await sync_open_refunds(stack.engine, stack.settings, now=later) >= 1
    done = await stack.wait_refund(r.json()["id"], {"SUCCESS"})
    assert done["amount_paise"] == 12000
    wallet = await stack.wallet(tok)
    assert wallet["available_credits"] == 3200 - 1200 - 80


async def test_who_may_refund(stack: Stack, variant: Any) -> None:
    tok, paid = await stack.credited()
    for role in (Role.member, Role.community_owner):
        # Someone else's payment: not even confirmed to exist.
        r = await stack.refund(paid["id"], amount_paise=1000, tok=stack.token(role=role))
        assert r.status_code == 404, role
    auditor = await stack.refund(paid["id"], amount_paise=1000, tok=stack.token(role=Role.auditor))
    assert auditor.status_code == 403
    own = await stack.refund(paid["id"], amount_paise=1000, tok=tok)
    assert own.status_code == 403  # self-service is off by default
    support = await stack.refund(paid["id"], amount_paise=1000, tok=stack.token(role=Role.support))
    assert support.status_code == 202
    lenient = await variant(refund_self_service_days=7)
    mine = await lenient.refund(paid["id"], amount_paise=1000, tok=tok)
    assert mine.status_code == 202, mine.text
    stranger = await lenient.refund(paid["id"], amount_paise=1000, tok=stack.token())
    assert stranger.status_code == 404
    # A buyer reads their own refunds; others do not learn they exist.
    seen = await stack.api.get(
        f"/v1/refunds/{mine.json()['id']}", headers={"Authorization": f"Bearer {tok}"}
    )
    assert seen.status_code == 200
    hidden = await stack.api.get(
        f"/v1/refunds/{mine.json()['id']}",
        headers={"Authorization": f"Bearer {stack.token()}"},
    )
    assert hidden.status_code == 404
    for rid in (support.json()["id"], mine.json()["id"]):
        await stack.wait_refund(rid, {"SUCCESS"})


async def test_an_unpaid_payment_is_not_refundable(stack: Stack) -> None:
    tok = stack.token()
    order = await stack.buy(tok)
    r = await stack.refund(order["id"])
    assert r.status_code == 409 and r.json()["code"] == "payment_not_refundable"
    missing = await stack.refund(str(uuid.uuid4()))
    assert missing.status_code == 404


async def test_refund_webhooks_are_verified_and_checked_against_our_refund(stack: Stack) -> None:
    tok, paid = await stack.credited()
    await stack.faults(webhook_drop_rate=1.0)
    r = await stack.refund(paid["id"], amount_paise=3000)
    refund = await stack.wait_refund(r.json()["id"], {"PENDING"})
    body = (
        '{"data":{"refund":{"cf_refund_id":"1","cf_payment_id":"2","refund_id":"'
        + refund["refund_ref"]
        + '","order_id":"'
        + refund["order_id"]
        + '","refund_amount":%s,"refund_currency":"INR","entity":"Refund",'
        '"refund_status":"%s","refund_arn":"1234"}},'
        '"event_time":"2026-11-26T12:00:01+05:30","type":"REFUND_STATUS_WEBHOOK"}'
    )
    forged = await stack.signed_webhook(
        (body % ("30.00", "SUCCESS")).encode(), secret="not-our-secret"
    )
    assert forged.status_code == 401
    wrong = await stack.signed_webhook((body % ("300.00", "CANCELLED")).encode())
    assert wrong.status_code == 200
    assert (
        await stack.scalar(
            "SELECT count(*) FROM fraud_events WHERE kind = 'refund_webhook_mismatch' "
            "AND payment_id = :p",
            p=paid["id"],
        )
        == 1
    )
    still = await stack.get_refund(refund["id"])
    assert still["status"] == "PENDING", f"a mismatched webhook moved the refund: {still}"
    # The right one (as Cashfree sends it once the refund is done) prompts a lookup, which
    # finds SUCCESS. The payload itself is never trusted: the lookup decides.
    await asyncio.sleep(1.0)
    ok = await stack.signed_webhook((body % ("30.00", "SUCCESS")).encode())
    assert ok.status_code == 200
    await stack.wait_refund(refund["id"], {"SUCCESS"})
    assert (
        await stack.scalar(
            "SELECT status FROM payment_webhooks WHERE event_type = 'REFUND_STATUS_WEBHOOK' "
            "AND payment_id = :p AND status = 'processed'",
            p=paid["id"],
        )
        == "processed"
    )
    wallet = await stack.wallet(tok)
    assert wallet["available_credits"] == 3200 - 300 - 20


async def test_a_refund_cashfree_refuses_gives_the_credits_back(stack: Stack) -> None:
    tok, paid = await stack.credited()
    # Someone refunded the whole order in Cashfree's dashboard, outside our books.
    outside = await stack.sandbox.post(
        f"/pg/orders/{paid['order_id']}/refunds",
        json={"refund_id": "dashboard_1", "refund_amount": 300.00},
    )
    assert outside.status_code == 200, outside.text
    r = await stack.refund(paid["id"], amount_paise=5000)
    assert r.status_code == 202
    done = await stack.wait_refund(r.json()["id"], {"FAILED"})
    assert done["failure_reason"] == (
        "Cashfree refused: cashfree HTTP 400 refund_amount_invalid invalid_request_error: "
        "create_refund: refund_amount : more than the paid amount not yet refunded"
    )
    wallet = await stack.wallet(tok)
    assert (wallet["available_credits"], wallet["locked_credits"]) == (3200, 0)


@pytest.mark.slow
async def test_a_refund_cashfree_disagrees_with_is_parked_for_review(stack: Stack) -> None:
    tok, paid = await stack.credited()
    dead = await _dead_letters(stack)
    await stack.faults(error_rate=1.0)  # our create call cannot get through ...
    r = await stack.refund(paid["id"], amount_paise=5000)
    assert r.status_code == 202
    ref = r.json()["refund_ref"]
    deadline = asyncio.get_running_loop().time() + 30
    while await _dead_letters(stack) == dead:  # ... until its message gives up
        assert asyncio.get_running_loop().time() < deadline, "never dead-lettered"
        await asyncio.sleep(0.2)
    await stack.faults(error_rate=0.0)
    # ... and meanwhile a refund with our id but another amount appears at Cashfree.
    odd = await stack.sandbox.post(
        f"/pg/orders/{paid['order_id']}/refunds",
        json={"refund_id": ref, "refund_amount": 70.00},
    )
    assert odd.status_code == 200, odd.text
    later = datetime.now(UTC) + timedelta(seconds=5)
    await sync_open_refunds(stack.engine, stack.settings, now=later)
    deadline = asyncio.get_running_loop().time() + 20
    while asyncio.get_running_loop().time() < deadline:
        reason = await stack.scalar(
            "SELECT review_reason FROM refunds WHERE id = :r", r=r.json()["id"]
        )
        if reason:
            break
        await asyncio.sleep(0.1)
    assert reason == (
        f"Cashfree's refund {ref} of 7000 paise disagrees with ours ({ref}, 5000 paise)"
    )
    assert (
        await stack.scalar(
            "SELECT count(*) FROM fraud_events "
            "WHERE kind = 'refund_needs_review' AND payment_id = :p",
            p=paid["id"],
        )
        == 1
    )
    # Nothing settled either way: the credits stay held, and the sync leaves it to a person.
    refund = await stack.get_refund(r.json()["id"])
    assert refund["status"] == "CREATED", f"a parked refund moved: {refund}"
    wallet = await stack.wallet(tok)
    assert (wallet["available_credits"], wallet["locked_credits"]) == (2666, 534)
    synced = "SELECT sync_count FROM refunds WHERE id = :r"
    before = await stack.scalar(synced, r=r.json()["id"])
    await sync_open_refunds(stack.engine, stack.settings, now=later)
    assert await stack.scalar(synced, r=r.json()["id"]) == before


async def _dead_letters(stack: Stack) -> int:
    names = Names(stack.settings.rabbitmq_queue_prefix, len(stack.settings.retry_delays_s))
    connection = await aio_pika.connect(stack.settings.rabbitmq_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(names.dlq("refund.processing"), passive=True)
        return int(queue.declaration_result.message_count or 0)


@pytest.mark.slow
async def test_refunds_of_one_wallet_settle_side_by_side_without_deadlocks(stack: Stack) -> None:
    tok = stack.token()
    orders = [await stack.buy(tok, pack_code="pack_150") for _ in range(6)]
    for order in orders:
        await stack.pay(order)
    for order in orders:
        await stack.wait_status(tok, order["id"], {"CREDITED"})
    deadlocks = "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
    before = await stack.scalar(deadlocks)
    made = await asyncio.gather(*(stack.refund(o["id"]) for o in orders))
    assert [r.status_code for r in made] == [202] * 6
    for r in made:
        await stack.wait_refund(r.json()["id"], {"SUCCESS"})
    await asyncio.sleep(1.0)  # statistics reach pg_stat_database when backends go idle
    assert await stack.scalar(deadlocks) == before
    assert (await stack.wallet(tok))["available_credits"] == 0


async def test_verify_names_what_was_tampered_with(stack: Stack) -> None:
    """Each refund and document check finds its fault (and the data is put back after)."""
    tok, paid = await stack.credited()
    r = await stack.refund(paid["id"], amount_paise=6000)
    done = await stack.wait_refund(r.json()["id"], {"SUCCESS"})
    await _documents_issued(stack, paid["id"])
    hold = await stack.scalar("SELECT hold_id FROM refunds WHERE id = :r", r=done["id"])
    lot = await stack.scalar("SELECT purchase_lot_id FROM refunds WHERE id = :r", r=done["id"])
    series = await stack.scalar(
        "SELECT series || '|' || fiscal_year FROM invoices WHERE refund_id = :r", r=done["id"]
    )
    # (check, change, key, delta): each change is undone by the opposite delta.
    cases = [
        (
            "refund_totals",
            "UPDATE payments SET refund_amount_paise = refund_amount_paise + :d WHERE id = :k",
            paid["id"],
            1,
        ),
        (
            "refund_lots",
            "UPDATE credit_lots SET credits_refunded = credits_refunded + :d WHERE id = :k",
            lot,
            -1,  # the lot is full: remaining + refunded = granted
        ),
        (
            "refund_reservations",
            "UPDATE credit_lots SET credits_reserved = credits_reserved + :d WHERE id = :k",
            lot,
            1,
        ),
        (
            "document_numbers",
            "UPDATE document_sequences SET last_number = last_number + :d "
            "WHERE series || '|' || fiscal_year = :k",
            series,
            1,
        ),
    ]
    for check, change, key, delta in cases:
        await stack.execute(change, d=delta, k=key)
        try:
            report = await verify_ledger(stack.engine)
        finally:
            await stack.execute(change, d=-delta, k=key)
        assert check in {f.check for f in report.findings}, (check, report.findings)
    # A captured refund hold shown as released: the refund was not reversed as it says.
    await stack.execute(
        "UPDATE wallet_holds SET status = 'released', captured_credits = 0, "
        "released_credits = credits WHERE id = :h",
        h=hold,
    )
    try:
        report = await verify_ledger(stack.engine)
    finally:
        await stack.execute(
            "UPDATE wallet_holds SET status = 'captured', captured_credits = credits, "
            "released_credits = 0 WHERE id = :h",
            h=hold,
        )
    assert "refund_reversal" in {f.check for f in report.findings}
    clean = await verify_ledger(stack.engine)
    assert clean.ok, [str(f) for f in clean.findings]
    assert (await stack.wallet(tok))["available_credits"] == 3200 - 600 - 40


async def _documents_issued(stack: Stack, payment_id: str) -> None:
    query = "SELECT count(*) FROM invoices WHERE payment_id = :p AND pdf_key IS NOT NULL"
    deadline = asyncio.get_running_loop().time() + 20
    while await stack.scalar(query, p=payment_id) < 2:
        assert asyncio.get_running_loop().time() < deadline, "documents not issued"
        await asyncio.sleep(0.1)
