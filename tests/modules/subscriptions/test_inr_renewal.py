"""INR renewals end to end (sandbox + API + worker, the sandbox's clock moved): each period's
charge raised on the mandate ahead of the period (the pre-debit notice and the earliest
debit leave no other way), a failed debit dunned by a new charge per attempt, a revoked
mandate ending in expiry past the grace, and racing renewal jobs raising one charge."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from commdesk_billing.gateway.subscriptions import SubscriptionsClient
from tests.harness.stack import Stack
from tests.modules.subscriptions import inr_support as t

pytestmark = pytest.mark.slow

LEAD = 3 * t.DAY  # the settings' default `subscription_inr_lead_s`


async def _paid_first_period(stack: Stack, tok: str) -> tuple[dict[str, str], str]:
    """An approved mandate, an INR subscription on it, its first period paid."""
    m = await t.mandate(stack, tok)
    plan = await t.inr_plan(stack)
    sid = (await t.subscribe(stack, tok, plan, m["id"]))["id"]
    await t.renew(stack, sid)
    done = await t.debit(stack, tok, await t.payment_of(stack, sid, 1, 1))
    assert done["status"] == "CREDITED"
    assert (await t.read(stack, tok, sid))["status"] == "active"
    return m, sid


async def test_renewed_across_three_periods_with_one_failure_and_recovery(
    inr: Stack, inr_client: SubscriptionsClient
) -> None:
    tok = inr.token()
    m, sid = await _paid_first_period(inr, tok)
    p1 = await t.read(inr, tok, sid)

    # Period 2: its charge is raised the lead time before period 1 ends, and its debit fails
    # (after UPI's retries). Nothing is raised before the lead time.
    await t.advance_to(inr, t.plus(p1["current_period_end"], -LEAD - t.HOUR))
    await t.renew(inr, sid)
    assert len(await t.attempts(inr, sid)) == 1
    await t.advance_to(inr, t.plus(p1["current_period_end"], -LEAD + t.HOUR))
    r = await inr.sandbox.post(
        f"/_sandbox/subscriptions/{m['subscription_id']}/charge-outcome",
        json={"outcome": "failure", "failure_reason": "INSUFFICIENT_FUNDS"},
    )
    assert r.status_code == 200, r.text
    await t.renew(inr, sid)
    failed = await t.debit(inr, tok, await t.payment_of(inr, sid, 2, 1))
    assert (failed["status"], failed["failure_code"]) == ("FAILED", "INSUFFICIENT_FUNDS")
    await t.renew(inr, sid)  # sees the payment failed: dunning
    dunned = await t.read(inr, tok, sid)
    assert (dunned["status"], dunned["current_period"]) == ("past_due", 1)
    p2 = dunned["periods"][1]
    first_retry = t.plus(p2["period_start"], t.DAY)
    assert p2["status"] == "past_due" and p2["attempts"] == 1
    assert t.plus(p2["next_retry_at"], 0) == first_retry
    [warned] = [e for k, e in await t.events(inr, sid) if k == "subscription.renewal_failed"]
    assert (warned["attempt"], warned["reason"]) == (1, "payment failed: INSUFFICIENT_FUNDS")

    # The dunning retry: a new charge under the attempt's own key; it succeeds.
    await t.advance_to(inr, first_retry)
    await t.renew(inr, sid)
    retry_pid = await t.payment_of(inr, sid, 2, 2)
    key = await inr.scalar(
        "SELECT idempotency_key FROM payments WHERE id = :p", p=uuid.UUID(retry_pid)
    )
    assert key.endswith(f":subscription:{sid}:period:2:attempt:2")
    assert (await t.debit(inr, tok, retry_pid))["status"] == "CREDITED"
    back = await t.read(inr, tok, sid)
    assert (back["status"], back["current_period"]) == ("active", 2)
    assert back["current_period_start"] == p1["current_period_end"]

    # Period 3: raised ahead, paid at the first attempt.
    await t.advance_to(inr, t.plus(back["current_period_end"], -LEAD + t.HOUR))
    await t.renew(inr, sid)
    assert (await t.debit(inr, tok, await t.payment_of(inr, sid, 3, 1)))["status"] == "CREDITED"
    third = await t.read(inr, tok, sid)
    assert (third["status"], third["current_period"]) == ("active", 3)
    assert [(p["number"], p["status"], p["price_paise"]) for p in third["periods"]] == [
        (1, "paid", t.PRICE),
        (2, "paid", t.PRICE),
        (3, "paid", t.PRICE),
    ]
    assert await t.attempts(inr, sid) == [
        (1, 1, "paid", "CREDITED"),
        (2, 1, "failed", "FAILED"),
        (2, 2, "paid", "CREDITED"),
        (3, 1, "paid", "CREDITED"),
    ]
    at_cashfree = await t.cashfree_charges(inr_client, m["subscription_id"])
    assert len({c.payment_id for c in at_cashfree}) == len(at_cashfree) == 4
    renewed = [e for k, e in await t.events(inr, sid) if k == "subscription.renewed"]
    assert [(e["period"], e["price_paise"]) for e in renewed] == [
        (1, t.PRICE),
        (2, t.PRICE),
        (3, t.PRICE),
    ]
    revenue = await inr.scalar(
        "SELECT count(*) FROM ledger_journals WHERE kind = 'subscription.paid' "
        "AND metadata->>'subscription_id' = :s",
        s=sid,
    )
    assert revenue == 3
    await t.books_agree(inr)


async def test_a_revoked_mandate_is_past_due_then_expires_past_the_grace(
    inr: Stack, inr_client: SubscriptionsClient
) -> None:
    tok = inr.token()
    m, sid = await _paid_first_period(inr, tok)
    p1 = await t.read(inr, tok, sid)
    r = await inr.api.post(f"/v1/mandates/{m['id']}/revoke", headers=t.auth(tok))
    assert r.status_code == 200 and r.json()["status"] == "revoked", r.text

    await t.advance_to(inr, t.plus(p1["current_period_end"], -LEAD + t.HOUR))
    await t.renew(inr, sid)
    due = await t.read(inr, tok, sid)
    assert due["status"] == "past_due"
    assert await t.attempts(inr, sid) == [(1, 1, "paid", "CREDITED"), (2, 1, "failed", None)]
    [warned] = [e for k, e in await t.events(inr, sid) if k == "subscription.renewal_failed"]
    assert (warned["attempt"], warned["reason"]) == (1, "mandate_not_active")
    assert t.plus(warned["next_retry_at"], 0) == t.plus(due["periods"][1]["next_retry_at"], 0)
    announced = await inr.scalar(
        "SELECT count(*) FROM outbox WHERE message_type = 'subscription.renewal_failed' "
        "AND body::json -> 'payload' ->> 'subscription_id' = :s",
        s=sid,
    )
    assert announced == 1  # to the member's notifications

    # Past the grace (7 days from period 2's start): the last attempt fails too, and the
    # subscription expires at the grace's end. No charge ever reached Cashfree.
    grace_end = t.plus(p1["current_period_end"], 7 * t.DAY)
    await t.advance_to(inr, grace_end)
    await t.renew(inr, sid)
    ended = await t.read(inr, tok, sid)
    assert (ended["status"], ended["ended_reason"]) == ("expired", "unpaid")
    assert t.plus(ended["ended_at"], 0) == grace_end
    assert ended["periods"][1]["status"] == "unpaid"
    kinds = [k for k, _ in await t.events(inr, sid)]
    assert kinds.count("subscription.cancelled") == 1
    assert len(await t.cashfree_charges(inr_client, m["subscription_id"])) == 1
    await t.renew(inr, sid)  # nothing more
    assert len(await t.attempts(inr, sid)) == 3
    await t.books_agree(inr)


async def test_two_renewal_jobs_racing_raise_one_charge_per_period(
    inr: Stack, inr_client: SubscriptionsClient
) -> None:
    tok = inr.token()
    m = await t.mandate(inr, tok)
    plan = await t.inr_plan(inr)
    sid = (await t.subscribe(inr, tok, plan, m["id"]))["id"]
    await asyncio.gather(*(t.renew(inr, sid) for _ in range(4)))
    assert await t.attempts(inr, sid) == [(1, 1, "raised", "ACTIVE")]
    assert len(await t.cashfree_charges(inr_client, m["subscription_id"])) == 1
    assert (await t.debit(inr, tok, await t.payment_of(inr, sid, 1, 1)))["status"] == "CREDITED"

    p1 = await t.read(inr, tok, sid)
    await t.advance_to(inr, t.plus(p1["current_period_end"], -LEAD + t.HOUR))
    await asyncio.gather(*(t.renew(inr, sid) for _ in range(4)))
    assert await t.attempts(inr, sid) == [
        (1, 1, "paid", "CREDITED"),
        (2, 1, "raised", "ACTIVE"),
    ]
    assert len(await t.cashfree_charges(inr_client, m["subscription_id"])) == 2
    assert (await t.debit(inr, tok, await t.payment_of(inr, sid, 2, 1)))["status"] == "CREDITED"
    await asyncio.gather(*(t.renew(inr, sid) for _ in range(4)))
    assert (await t.read(inr, tok, sid))["current_period"] == 2
    assert len(await t.cashfree_charges(inr_client, m["subscription_id"])) == 2
    await t.books_agree(inr)


async def test_a_charge_in_flight_when_the_member_cancels_does_not_renew_and_is_listed(
    inr: Stack,
) -> None:
    """The renewal's charge is raised days ahead; the member then asks to stop at the
    period's end. Cashfree debits it anyway (nobody cancelled it there): the money is kept,
    its attempt marked `unapplied` for finance to refund; the subscription is not renewed
    by it, and the books agree."""
    tok = inr.token()
    _m, sid = await _paid_first_period(inr, tok)
    p1 = await t.read(inr, tok, sid)
    await t.advance_to(inr, t.plus(p1["current_period_end"], -LEAD + t.HOUR))
    await t.renew(inr, sid)
    pid = await t.payment_of(inr, sid, 2, 1)
    r = await inr.api.post(
        f"/v1/subscriptions/{sid}/cancel",
        json={"at_period_end": True},
        headers=t.auth(tok, key=True),
    )
    assert r.status_code == 200 and r.json()["cancel_at_period_end"] is True, r.text
    assert (await t.debit(inr, tok, pid))["status"] == "CREDITED"
    kept = await t.read(inr, tok, sid)
    assert (kept["status"], kept["current_period"]) == ("active", 1)
    assert await t.attempts(inr, sid) == [
        (1, 1, "paid", "CREDITED"),
        (2, 1, "unapplied", "CREDITED"),
    ]
    await t.books_agree(inr)
    await t.advance_to(inr, t.plus(p1["current_period_end"], 1))
    await t.renew(inr, sid)
    ended = await t.read(inr, tok, sid)
    assert (ended["status"], ended["ended_reason"]) == ("cancelled", "cancelled")
    assert ended["periods"][1]["status"] == "void"
    await t.books_agree(inr)
