"""The mandate branch's guards and fallbacks, end to end on one stack whose clock is never
moved: the PUT's checks of `mandate_id`, a mandate revoked by the payer (the next crossing
gets a checkout link), a price above the mandate's maximum, the caps, and 50 concurrent
debits across the threshold (one recharge, one charge at Cashfree)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import pytest

from commdesk_billing.gateway.factory import cashfree_client, subscriptions_client
from commdesk_billing.modules.autorecharge import requests
from commdesk_billing.modules.autorecharge.model import RechargeStatus
from tests.harness.stack import Stack, StackFactory
from tests.modules.autorecharge.mandate_helpers import (
    PHONE,
    active_mandate,
    auth,
    debit,
    decisions,
    enable,
    mandate,
    mandate_stack,
    member,
    recharges,
    sandbox_charges,
    until,
    until_decision,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
async def still(stack_factory: StackFactory) -> AsyncIterator[Stack]:
    async with AsyncExitStack() as scope:  # torn down with the module
        yield await mandate_stack(stack_factory, scope=scope)


async def _put(stack: Stack, tok: str, wid: str, mandate_id: str) -> tuple[int, str | None]:
    r = await stack.api.put(
        f"/v1/wallets/{wid}/auto-recharge",
        json={
            "enabled": True,
            "pack_code": "pack_150",
            "customer_phone": PHONE,
            "mandate_id": mandate_id,
        },
        headers=auth(tok),
    )
    return r.status_code, r.json().get("code")


async def test_put_takes_only_the_owners_usable_mandate(still: Stack) -> None:
    tok, wid = await member(still, 0)
    other, _ = await member(still, 0)
    theirs = await active_mandate(still, other)
    assert await _put(still, tok, wid, theirs["id"]) == (422, "auto_recharge_mandate_invalid")
    assert await _put(still, tok, wid, str(uuid.uuid4())) == (422, "auto_recharge_mandate_invalid")
    # Pending (not approved yet) is taken: charged once approved.
    r = await still.api.post(
        "/v1/mandates",
        json={"max_amount_paise": 50_000, "customer_phone": PHONE, "customer_email": "m@ex.com"},
        headers=auth(tok, uuid.uuid4().hex),
    )
    assert r.status_code == 201, r.text
    pending = r.json()
    assert await _put(still, tok, wid, pending["id"]) == (200, None)
    # Declined by the payer (failed): refused.
    r = await still.sandbox.post(
        f"/_sandbox/subscriptions/{pending['subscription_id']}/authorize",
        json={"payment_method": "upi", "outcome": "decline"},
    )
    assert r.status_code == 200, r.text
    await mandate(still, tok, "failed", pending["id"])
    assert await _put(still, tok, wid, pending["id"]) == (422, "auto_recharge_mandate_invalid")
    # Revoked: refused.
    mine = await active_mandate(still, tok)
    assert await _put(still, tok, wid, mine["id"]) == (200, None)
    r = await still.api.post(f"/v1/mandates/{mine['id']}/revoke", headers=auth(tok))
    assert r.status_code == 200, r.text
    assert await _put(still, tok, wid, mine["id"]) == (422, "auto_recharge_mandate_invalid")


async def test_a_mandate_revoked_by_the_payer_falls_back_to_a_checkout_link(
    still: Stack,
) -> None:
    tok, wid = await member(still, 300)
    m = await active_mandate(still, tok)
    await enable(still, tok, wid, m["id"])
    r = await still.sandbox.post(f"/_sandbox/subscriptions/{m['subscription_id']}/revoke")
    assert r.status_code == 200, r.text
    await mandate(still, tok, "revoked", m["id"])

    await debit(still, tok, wid, 150)
    fell = await until_decision(still, tok, wid, "fired", "mandate_unusable_checkout")
    assert fell["data"] == {"mandate_id": m["id"], "mandate_status": "revoked"}
    opened = await until_decision(still, tok, wid, "checkout_opened")
    assert opened["data"]["checkout_url"].startswith(still.sandbox_url)
    payment = await still.payment(tok, opened["data"]["payment_id"])
    assert (payment["channel"], payment["status"]) == ("order", "ACTIVE")
    assert (await still.wallet(tok))["pending_credits"] == 1500
    assert await sandbox_charges(still, m["subscription_id"]) == []
    # The member pays on the link: credited through the purchase path, recharge succeeded.
    await still.pay(payment, "upi", "success")
    await still.wait_status(tok, payment["id"], {"CREDITED"})
    await until_decision(still, tok, wid, "succeeded")
    seen = await still.wallet(tok)
    assert (seen["available_credits"], seen["pending_credits"]) == (1650, 0)


async def test_a_price_above_the_mandates_maximum_is_not_charged(still: Stack) -> None:
    tok, wid = await member(still, 300)
    m = await active_mandate(still, tok, max_paise=10_000)  # ₹100; the pack is ₹150
    await enable(still, tok, wid, m["id"])
    await debit(still, tok, wid, 150)
    skipped = await until_decision(still, tok, wid, "skipped", "above_mandate_max")
    assert skipped["data"] == {
        "mandate_id": m["id"],
        "amount_paise": 15_000,
        "max_amount_paise": 10_000,
    }
    assert [r.status for r in await recharges(still, wid)] == ["skipped"]
    assert (await still.wallet(tok))["pending_credits"] == 0
    assert await sandbox_charges(still, m["subscription_id"]) == []
    rows = await still.scalar(
        "SELECT count(*) FROM payments WHERE subscription_id = :s", s=m["subscription_id"]
    )
    assert rows == 0


async def test_the_caps_hold_on_the_mandate_branch(still: Stack) -> None:
    tok, wid = await member(still, 300)
    m = await active_mandate(still, tok)
    await enable(still, tok, wid, m["id"], max_paise_per_day=10_000)  # below one pack
    await debit(still, tok, wid, 150)
    capped = await until_decision(still, tok, wid, "capped", "daily_amount")
    assert capped["data"] == {"cap": 10_000, "would_be": 15_000}
    assert await sandbox_charges(still, m["subscription_id"]) == []
    assert [d["decision"] for d in await decisions(still, tok, wid)] == ["fired", "capped"]


async def test_fifty_concurrent_debits_make_one_recharge_and_one_charge(still: Stack) -> None:
    tok, wid = await member(still, 1250)
    m = await active_mandate(still, tok)
    cfg = await enable(still, tok, wid, m["id"], threshold=1000)
    assert cfg["trigger_level"] == 1000
    # 50 debits of 10 at once take the wallet from 1250 to 750: across the level once.
    await asyncio.gather(*(debit(still, tok, wid, 10) for _ in range(50)))
    assert (await still.wallet(tok))["available_credits"] == 750
    await until_decision(still, tok, wid, "charge_raised")

    async def charged() -> int:
        return len(await sandbox_charges(still, m["subscription_id"]))

    await until(charged, 1)
    found = await recharges(still, wid)
    assert len(found) == 1 and found[0].status in ("pending", "notified")
    rows = await still.scalar(
        "SELECT count(*) FROM payments WHERE subscription_id = :s", s=m["subscription_id"]
    )
    assert rows == 1
    fired = [d for d in await decisions(still, tok, wid) if d["decision"] == "fired"]
    assert len(fired) == 1
    # A redelivery of the request charges nothing more.
    async with (
        cashfree_client(still.settings) as client,
        subscriptions_client(still.settings) as subs,
    ):
        again = await requests.execute(
            still.engine, client, still.settings, found[0].id, subs_client=subs
        )
    assert again in (RechargeStatus.pending, RechargeStatus.notified)
    assert len(await sandbox_charges(still, m["subscription_id"])) == 1
