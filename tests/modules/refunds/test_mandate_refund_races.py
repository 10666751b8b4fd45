"""Refunds of mandate debits under races, lost answers and refund ids Cashfree holds for
another charge: over real HTTP against the sandbox's Subscriptions refund API, the
refund.processing worker and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
import pytest

from commdesk_billing.gateway import signature
from commdesk_billing.gateway.factory import subscriptions_client
from commdesk_billing.modules.ledger.verify import verify_ledger
from commdesk_billing.modules.mandates import service as mandates
from commdesk_billing.modules.payments.mandate_charges import earliest_schedule_date
from commdesk_billing.modules.refunds.jobs import sync_open_refunds
from commdesk_billing.queues.topology import Names
from tests.harness.stack import Stack, StackFactory
from tests.modules.autorecharge.mandate_helpers import (
    SUBS_HOOK,
    active_mandate,
    advance_to,
    debit_time,
    mandate_stack,
    member,
    sandbox_now,
)
from tests.modules.refunds.mandate_helpers import sandbox_refund, until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
async def mstack(stack_factory: StackFactory) -> AsyncIterator[Stack]:
    async with AsyncExitStack() as scope:
        yield await mandate_stack(stack_factory, scope=scope)


async def _raise(stack: Stack, mandate_id: str, pack_code: str) -> str:
    """A charge of `pack_code` raised on the mandate (auto-recharge's way); its payment id."""
    async with subscriptions_client(stack.settings) as client:
        payment = await mandates.charge(
            stack.engine,
            client,
            stack.settings,
            uuid.UUID(mandate_id),
            key=f"recharge-{uuid.uuid4().hex}",
            pack_code=pack_code,
            actor="auto-recharge",
            schedule=earliest_schedule_date(await sandbox_now(stack)),
        )
    return str(payment.id)


async def _debited(stack: Stack, tok: str, pid: str) -> dict[str, Any]:
    async def notified() -> bool:
        return (await stack.payment(tok, pid))["pdn_at"] is not None

    await until(notified, True)
    await advance_to(stack, debit_time(await stack.payment(tok, pid)))
    done = await stack.wait_status(tok, pid, {"CREDITED"}, timeout_s=30)
    assert done["channel"] == "mandate"
    return done


async def _verified(stack: Stack) -> None:
    report = await verify_ledger(stack.engine)
    assert report.ok, [str(f) for f in report.findings]


async def _dead_letters(stack: Stack) -> int:
    names = Names(stack.settings.rabbitmq_queue_prefix, len(stack.settings.retry_delays_s))
    connection = await aio_pika.connect(stack.settings.rabbitmq_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(names.dlq("refund.processing"), passive=True)
        return int(queue.declaration_result.message_count or 0)


async def _stuck_created(stack: Stack, pid: str, amount_paise: int) -> dict[str, Any]:
    """A refund whose create call never got through (every try answered 500 before Cashfree
    did anything): CREATED, its message dead-lettered, the sandbox healthy again."""
    dead = await _dead_letters(stack)
    await stack.faults(error_rate=1.0)
    try:
        r = await stack.refund(pid, amount_paise=amount_paise)
        assert r.status_code == 202, r.text
        deadline = asyncio.get_running_loop().time() + 30
        while await _dead_letters(stack) == dead:
            assert asyncio.get_running_loop().time() < deadline, "never dead-lettered"
            await asyncio.sleep(0.2)
    finally:
        await stack.faults(error_rate=0.0)
    refund = await stack.get_refund(r.json()["id"])
    assert refund["status"] == "CREATED", refund
    return dict(refund)


async def test_a_charge_not_yet_debited_is_not_refunded(mstack: Stack) -> None:
    tok, _ = await member(mstack, 0)
    m = await active_mandate(mstack, tok)
    pid = await _raise(mstack, m["id"], "pack_150")
    pending = await mstack.payment(tok, pid)
    assert pending["status"] != "CREDITED", pending
    r = await mstack.refund(pid)
    assert r.status_code == 409 and r.json()["code"] == "payment_not_refundable", r.text
    assert (
        await mstack.scalar("SELECT count(*) FROM refunds WHERE payment_id = :p", p=uuid.UUID(pid))
        == 0
    )


async def test_refunds_racing_never_take_more_than_was_debited(mstack: Stack) -> None:
    tok, _ = await member(mstack, 0)
    m = await active_mandate(mstack, tok)
    paid = await _debited(mstack, tok, await _raise(mstack, m["id"], "pack_300"))
    pid = paid["id"]
    # Two partials that sum over the charge, at once: one is made, the other is told
    # how much is left.
    made = await asyncio.gather(
        mstack.refund(pid, amount_paise=20_000), mstack.refund(pid, amount_paise=20_000)
    )
    codes = sorted(r.status_code for r in made)
    assert codes == [202, 422], [r.text for r in made]
    refused = next(r for r in made if r.status_code == 422)
    assert refused.json()["refundable_paise"] == 10_000
    won = next(r for r in made if r.status_code == 202).json()
    await mstack.wait_refund(won["id"], {"SUCCESS"})
    rest = await mstack.refund(pid)
    assert rest.status_code == 202 and rest.json()["amount_paise"] == 10_000, rest.text
    await mstack.wait_refund(rest.json()["id"], {"SUCCESS"})
    assert (
        await mstack.scalar(
            "SELECT refund_amount_paise FROM payments WHERE id = :p", p=uuid.UUID(pid)
        )
        == 30_000
    )
    await _verified(mstack)


async def test_a_lost_create_answer_makes_one_refund_at_cashfree(mstack: Stack) -> None:
    """Our create reached Cashfree and its answer was lost: the sync asks again under the
    same refund id, and Cashfree's answer is the refund it made (not a second one)."""
    tok, _ = await member(mstack, 0)
    m = await active_mandate(mstack, tok)
    paid = await _debited(mstack, tok, await _raise(mstack, m["id"], "pack_300"))
    refund = await _stuck_created(mstack, paid["id"], 12_000)
    sub_id = m["subscription_id"]
    # What our lost call made at Cashfree: the very request the client sends.
    made = await mstack.sandbox.post(
        f"/pg/subscriptions/{sub_id}/refunds",
        json={
            "subscription_id": sub_id,
            "payment_id": paid["order_id"],
            "refund_id": refund["refund_ref"],
            "refund_amount": 120.0,
            "refund_speed": "STANDARD",
            "refund_note": "customer asked",
        },
    )
    assert made.status_code == 200, made.text
    later = datetime.now(UTC) + timedelta(seconds=5)
    assert await sync_open_refunds(mstack.engine, mstack.settings, now=later) >= 1
    done = await mstack.wait_refund(refund["id"], {"SUCCESS"})
    assert done["cf_refund_id"] == made.json()["cf_refund_id"]
    # One refund of 120.00 at Cashfree: 180.00 of the charge is left, not 60.00.
    probe = await mstack.sandbox.post(
        f"/pg/subscriptions/{sub_id}/refunds",
        json={"payment_id": paid["order_id"], "refund_id": "rf_probe_2", "refund_amount": 180.01},
    )
    assert probe.status_code == 400 and probe.json()["code"] == "refund_amount_invalid"
    assert (await sandbox_refund(mstack, sub_id, refund["refund_ref"]))["refund_amount"] == 120.0
    await _verified(mstack)


async def test_a_refund_id_cashfree_holds_for_another_charge_is_not_ours(
    mstack: Stack,
) -> None:
    """Cashfree keeps refund ids unique per subscription, not per charge: a refund under our
    id of the mandate's *other* charge is not our refund, however its amount agrees. Were
    it settled, our books would say one charge was refunded while Cashfree refunded the
    other (whose credits the member keeps)."""
    tok, _ = await member(mstack, 0)
    m = await active_mandate(mstack, tok)
    ours = await _debited(mstack, tok, await _raise(mstack, m["id"], "pack_150"))
    other = await _debited(mstack, tok, await _raise(mstack, m["id"], "pack_150"))
    refund = await _stuck_created(mstack, ours["id"], 5_000)
    sub_id = m["subscription_id"]
    odd = await mstack.sandbox.post(
        f"/pg/subscriptions/{sub_id}/refunds",
        json={
            "payment_id": other["order_id"],
            "refund_id": refund["refund_ref"],
            "refund_amount": 50.0,
            "refund_note": "customer asked",
        },
    )
    assert odd.status_code == 200, odd.text
    later = datetime.now(UTC) + timedelta(seconds=5)
    await sync_open_refunds(mstack.engine, mstack.settings, now=later)

    async def moved() -> bool:
        row = await mstack.scalar(
            "SELECT review_reason IS NOT NULL OR status <> 'CREATED' FROM refunds WHERE id = :r",
            r=uuid.UUID(refund["id"]),
        )
        return bool(row)

    await until(moved, True, timeout_s=20)
    still = await mstack.get_refund(refund["id"])
    assert still["status"] == "CREATED", f"another charge's refund settled ours: {still}"
    assert await mstack.scalar(
        "SELECT review_reason FROM refunds WHERE id = :r", r=uuid.UUID(refund["id"])
    ) == (
        f"Cashfree's refund {refund['refund_ref']} is of {other['order_id']}, "
        f"ours of {ours['order_id']}"
    )
    wallet = await mstack.wallet(tok)
    assert (wallet["available_credits"], wallet["locked_credits"]) == (3000 - 500, 500)
    await _verified(mstack)


async def _subs_hook(stack: Stack, data: dict[str, Any], *, secret: str | None = None) -> Any:
    body = json.dumps(
        {
            "type": "SUBSCRIPTION_REFUND_STATUS",
            "event_time": datetime.now(UTC).isoformat(),
            "data": data,
        }
    ).encode()
    ts = str(int(time.time() * 1000))
    key = secret or stack.settings.cashfree_client_secret.get_secret_value()
    return await stack.api.post(
        SUBS_HOOK,
        content=body,
        headers={
            "content-type": "application/json",
            "x-webhook-timestamp": ts,
            "x-webhook-signature": signature.sign(key, ts, body),
            "x-webhook-version": "2025-01-01",
        },
    )


async def test_refund_webhooks_forged_or_of_another_charge_move_nothing(mstack: Stack) -> None:
    """A refund Cashfree keeps PENDING for good: a forged SUCCESS is refused unstored; a
    signed one naming our refund under the mandate's other charge is stored and dropped;
    the sync asks again and again and never gives the refund up (its credits stay held)."""
    tok, _ = await member(mstack, 0)
    m = await active_mandate(mstack, tok)
    ours = await _debited(mstack, tok, await _raise(mstack, m["id"], "pack_150"))
    other = await _debited(mstack, tok, await _raise(mstack, m["id"], "pack_150"))
    r = await mstack.refund(ours["id"], amount_paise=5000, reason="PENDING")
    assert r.status_code == 202, r.text
    refund = await mstack.wait_refund(r.json()["id"], {"PENDING"})
    sub_id = m["subscription_id"]
    success = {
        "subscription_id": sub_id,
        "payment_id": ours["order_id"],
        "refund_id": refund["refund_ref"],
        "refund_amount": 50.0,
        "refund_status": "SUCCESS",
    }
    stored = "SELECT count(*) FROM subscription_webhooks WHERE event_type = :t"
    before = await mstack.scalar(stored, t="SUBSCRIPTION_REFUND_STATUS")
    forged = await _subs_hook(mstack, success, secret="not-the-secret")
    assert forged.status_code == 401, forged.text
    assert await mstack.scalar(stored, t="SUBSCRIPTION_REFUND_STATUS") == before
    elsewhere = await _subs_hook(mstack, success | {"payment_id": other["order_id"]})
    assert elsewhere.status_code == 200 and elsewhere.json()["status"] == "accepted"
    asked = "SELECT sync_count FROM refunds WHERE id = :r"
    count = await mstack.scalar(asked, r=uuid.UUID(refund["id"]))
    await asyncio.sleep(1.0)  # the worker had the time to act on it, had it been sent
    assert await mstack.scalar(asked, r=uuid.UUID(refund["id"])) == count
    for n in (1, 2, 3):
        later = datetime.now(UTC) + timedelta(seconds=n * (5 + mstack.settings.refund_sync_after_s))
        assert await sync_open_refunds(mstack.engine, mstack.settings, now=later) >= 1

        async def asked_again(want: int = count + 2 * n) -> bool:
            return bool(await mstack.scalar(asked, r=uuid.UUID(refund["id"])) >= want)

        await until(asked_again, True)
    still = await mstack.get_refund(refund["id"])
    assert still["status"] == "PENDING", still
    wallet = await mstack.wallet(tok)
    assert (wallet["available_credits"], wallet["locked_credits"]) == (3000 - 500, 500)
    assert (await sandbox_refund(mstack, sub_id, refund["refund_ref"]))[
        "refund_status"
    ] == "PENDING"
    await _verified(mstack)
