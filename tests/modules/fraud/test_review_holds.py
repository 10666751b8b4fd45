"""Review holds under the paths that could leak them: a refund decision whose refund fails
at Cashfree, a blocked attempt's key used again, and `ledger verify` on a review hold."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from commdesk_billing.modules.ledger.verify import verify_ledger
from tests.harness.stack import Stack, StackFactory
from tests.modules.fraud.test_scoring import order, staff, tight

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("how", ["decision", "refund_api"])
async def test_a_failed_refund_of_a_held_payment_puts_its_credits_back_under_review(
    stacks: StackFactory, how: str
) -> None:
    """The reviewer (or finance, through the refunds API) chose to refund a suspect
    purchase, and Cashfree refused the refund: the money stayed with us, but the credits
    must not become spendable without a reviewer's release. They go back under review."""
    stack = await stacks(**tight(fraud_new_account_weight=70))
    tok = stack.token()
    made = await order(stack, tok, pack_code="pack_1000")  # a new account, the largest pack
    assert made.status_code == 201, made.text
    pid = made.json()["id"]
    await stack.pay(made.json())
    await stack.wait_status(tok, pid, {"CREDITED"})
    review_id = await stack.scalar("SELECT id FROM fraud_reviews WHERE payment_id = :p", p=pid)
    url = f"/v1/fraud/reviews/{review_id}/decision"
    # The sandbox's refund_note switch: a refund whose note is FAILED fails at Cashfree.
    if how == "decision":
        r = await stack.api.post(
            url, json={"decision": "refund", "reason": "FAILED"}, headers=staff(stack)
        )
        assert (r.status_code, r.json()["status"]) == (200, "refunded"), r.text
    else:
        r = await stack.refund(pid, reason="FAILED")
        assert r.status_code == 202, r.text
    refund_id = await stack.scalar("SELECT id FROM refunds WHERE payment_id = :p", p=pid)
    await stack.wait_refund(str(refund_id), {"CANCELLED", "FAILED"})

    wallet = await stack.wallet(tok)
    assert (wallet["available_credits"], wallet["locked_credits"]) == (0, 12000)
    review = await stack.scalar(
        "SELECT json_build_array(status, hold_id IS NOT NULL) FROM fraud_reviews WHERE id = :r",
        r=review_id,
    )
    assert review == ["pending", True]
    # A reviewer decides again: a second refund that succeeds takes the credits ...
    again = await stack.api.post(
        url, json={"decision": "refund", "reason": "stolen card"}, headers=staff(stack)
    )
    assert (again.status_code, again.json()["status"]) == (200, "refunded"), again.text
    second = await stack.scalar(
        "SELECT id FROM refunds WHERE payment_id = :p AND id <> :r", p=pid, r=refund_id
    )
    await stack.wait_refund(str(second), {"SUCCESS"})
    wallet = await stack.wallet(tok)
    assert (wallet["available_credits"], wallet["locked_credits"]) == (0, 0)


async def test_a_failed_refund_then_a_release_frees_the_credits(stacks: StackFactory) -> None:
    stack = await stacks(**tight(fraud_new_account_weight=70))
    tok = stack.token()
    made = await order(stack, tok, pack_code="pack_1000")
    pid = made.json()["id"]
    await stack.pay(made.json())
    await stack.wait_status(tok, pid, {"CREDITED"})
    review_id = await stack.scalar("SELECT id FROM fraud_reviews WHERE payment_id = :p", p=pid)
    url = f"/v1/fraud/reviews/{review_id}/decision"
    r = await stack.api.post(
        url, json={"decision": "refund", "reason": "FAILED"}, headers=staff(stack)
    )
    assert r.status_code == 200, r.text
    refund_id = await stack.scalar("SELECT id FROM refunds WHERE payment_id = :p", p=pid)
    await stack.wait_refund(str(refund_id), {"CANCELLED", "FAILED"})
    done = await stack.api.post(
        url, json={"decision": "release", "reason": "known member"}, headers=staff(stack)
    )
    assert (done.status_code, done.json()["status"]) == (200, "released"), done.text
    wallet = await stack.wallet(tok)
    assert (wallet["available_credits"], wallet["locked_credits"]) == (12000, 0)
    assert uuid.UUID(str(review_id))


async def _held(stack: Stack) -> tuple[str, str]:
    """A new account's purchase of the largest pack, credited and held for review."""
    tok = stack.token()
    made = await order(stack, tok, pack_code="pack_1000")
    assert made.status_code == 201, made.text
    pid = made.json()["id"]
    await stack.pay(made.json())
    await stack.wait_status(tok, pid, {"CREDITED"})
    assert (await stack.wallet(tok))["locked_credits"] == 12000
    return tok, pid


async def _review_findings(stack: Stack) -> list[str]:
    report = await verify_ledger(stack.engine)
    return [f.check for f in report.findings]


async def test_ledger_verify_ties_each_review_to_its_hold(stacks: StackFactory) -> None:
    """A review and its hold must agree: pending while the hold is active, decided once it
    is not. The lots alone cannot tell (a review marked released over an active hold still
    reserves exactly what the hold holds)."""
    stack = await stacks(**tight(fraud_new_account_weight=70))
    _, pid = await _held(stack)
    assert await _review_findings(stack) == []
    row = await stack.scalar(
        "SELECT json_build_array(id, hold_id) FROM fraud_reviews WHERE payment_id = :p", p=pid
    )
    review_id, hold_id = row
    # Decided behind the hold's back: the credits stay locked for ever.
    await stack.execute(
        "UPDATE fraud_reviews SET status = 'released', decided_at = now(), decided_by = 'x'"
        " WHERE id = :r",
        r=review_id,
    )
    assert "review_hold" in await _review_findings(stack)
    # Pending, but naming no hold while its purchase's review hold is active.
    await stack.execute(
        "UPDATE fraud_reviews SET status = 'pending', decided_at = NULL, decided_by = NULL,"
        " hold_id = NULL WHERE id = :r",
        r=review_id,
    )
    assert "review_hold" in await _review_findings(stack)
    # Put back: clean again (and at the stack's own verify on teardown).
    await stack.execute(
        "UPDATE fraud_reviews SET hold_id = :h WHERE id = :r", h=hold_id, r=review_id
    )
    assert await _review_findings(stack) == []


async def test_a_spend_hold_placed_before_a_paid_stage_review_cannot_free_the_credits(
    stacks: StackFactory,
) -> None:
    """The member locks their new credits in a spend hold of their own before
    fraud.detection scores the payment (the window is Cashfree's answer to its lookup), so
    the paid-stage review finds nothing available to hold. Voiding that hold afterwards
    must not make the credits spendable while the review is pending."""
    stack = await stacks(
        **tight(fraud_instrument_accounts_max=1, fraud_instrument_accounts_weight=60)
    )
    await stack.credited()  # a first member on the sandbox's one UPI VPA
    tok = stack.token()
    made = await order(stack, tok)
    assert made.status_code == 201, made.text
    pid = made.json()["id"]
    await stack.faults(latency_ms=1500)  # fraud.detection's lookup takes its time
    await stack.pay(made.json(), method="upi")
    wallet = await stack.wallet(tok)
    for _ in range(200):
        if wallet["available_credits"] == 3200:
            break
        await asyncio.sleep(0.05)
        wallet = await stack.wallet(tok)
    assert wallet["available_credits"] == 3200
    member = {"Authorization": f"Bearer {tok}"}
    hold = await stack.api.post(
        f"/v1/wallets/{wallet['id']}/holds",
        json={"credits": 3200, "reason": "parking them"},
        headers={**member, "Idempotency-Key": uuid.uuid4().hex},
    )
    assert hold.status_code == 201, hold.text
    for _ in range(200):
        if await stack.scalar("SELECT count(*) FROM fraud_reviews WHERE payment_id = :p", p=pid):
            break
        await asyncio.sleep(0.05)
    await stack.faults(latency_ms=0)
    assert (
        await stack.scalar("SELECT status FROM fraud_reviews WHERE payment_id = :p", p=pid)
        == "pending"
    )
    hold_id = hold.json()["hold"]["id"]
    freed = await stack.api.post(
        f"/v1/holds/{hold_id}/release",
        headers={**member, "Idempotency-Key": uuid.uuid4().hex},
    )
    assert freed.status_code == 200, freed.text
    wallet = await stack.wallet(tok)
    assert (wallet["available_credits"], wallet["locked_credits"]) == (0, 3200)


async def test_a_refund_not_made_gives_a_paid_stage_review_the_credits_it_held(
    stacks: StackFactory,
) -> None:
    """A refund asked for right after crediting holds the credits when fraud.detection
    opens its review (nothing left to hold); Cashfree then refuses the refund. The credits
    come back under the pending review, not to the member."""
    stack = await stacks(
        **tight(fraud_instrument_accounts_max=1, fraud_instrument_accounts_weight=60)
    )
    await stack.credited()
    tok = stack.token()
    made = await order(stack, tok)
    pid = made.json()["id"]
    await stack.faults(latency_ms=1500)
    await stack.pay(made.json(), method="upi")
    await stack.wait_status(tok, pid, {"CREDITED"})
    r = await stack.refund(pid, reason="FAILED")
    assert r.status_code == 202, r.text
    for _ in range(200):
        if await stack.scalar("SELECT count(*) FROM fraud_reviews WHERE payment_id = :p", p=pid):
            break
        await asyncio.sleep(0.05)
    await stack.wait_refund(r.json()["id"], {"CANCELLED", "FAILED"})
    await stack.faults(latency_ms=0)
    assert (
        await stack.scalar("SELECT status FROM fraud_reviews WHERE payment_id = :p", p=pid)
        == "pending"
    )
    wallet = await stack.wallet(tok)
    assert (wallet["available_credits"], wallet["locked_credits"]) == (0, 3200)


async def test_a_blocked_attempt_stores_no_order_and_its_key_is_scored_again(
    stacks: StackFactory,
) -> None:
    """A block keeps nothing of the order (no payment, no wallet), so its Idempotency-Key
    names nothing: the same key again is scored again (403 while the reason stands, the
    order once it is gone), never a stored 403 replayed nor a second order."""
    stack = await stacks(**tight())
    deny = await stack.api.post(
        "/v1/fraud/lists",
        json={
            "list": "deny",
            "kind": "device",
            "value": "stolen-device-02",
            "reason": "chargebacks",
        },
        headers=staff(stack),
    )
    assert deny.status_code == 201, deny.text
    sub = f"buyer-{uuid.uuid4().hex}"
    tok = stack.token(sub)
    headers = {
        "Authorization": f"Bearer {tok}",
        "Idempotency-Key": uuid.uuid4().hex,
        "X-Device-Id": "stolen-device-02",
    }
    body = {"pack_code": "pack_300", "customer_phone": "9876543210"}
    for _ in range(2):
        r = await stack.api.post("/v1/payments/orders", json=body, headers=headers)
        assert (r.status_code, r.json()["code"]) == (403, "payment_blocked"), r.text
    uid = await stack.scalar("SELECT id FROM users WHERE external_id = :s", s=sub)
    assert await stack.scalar("SELECT count(*) FROM payments WHERE user_id = :u", u=uid) == 0
    assert await stack.scalar("SELECT count(*) FROM wallets WHERE owner_id = :u", u=uid) == 0
    assert (
        await stack.scalar(
            "SELECT count(*) FROM fraud_assessments WHERE user_id = :u AND action = 'block'",
            u=uid,
        )
        == 2
    )
    gone = await stack.api.delete(f"/v1/fraud/lists/{deny.json()['id']}", headers=staff(stack))
    assert gone.status_code == 204
    ok = await stack.api.post("/v1/payments/orders", json=body, headers=headers)
    assert ok.status_code == 201, ok.text
    again = await stack.api.post("/v1/payments/orders", json=body, headers=headers)
    assert (again.status_code, again.json()["id"]) == (201, ok.json()["id"])
    assert await stack.scalar("SELECT count(*) FROM payments WHERE user_id = :u", u=uid) == 1


async def test_a_refund_racing_a_release_applies_in_one_order(stacks: StackFactory) -> None:
    """The refunds API and a reviewer's release at once: both lock the payment first, so
    one goes first. Refund first: the review ends refunded and the release is a 409.
    Release first: the refund is an ordinary one of the released credits. Either way the
    credits are refunded exactly once and none are left held or spendable."""
    stack = await stacks(**tight(fraud_new_account_weight=70))
    tok, pid = await _held(stack)
    review_id = await stack.scalar("SELECT id FROM fraud_reviews WHERE payment_id = :p", p=pid)
    refund, release = await asyncio.gather(
        stack.refund(pid),
        stack.api.post(
            f"/v1/fraud/reviews/{review_id}/decision",
            json={"decision": "release", "reason": "known member"},
            headers=staff(stack),
        ),
    )
    assert refund.status_code == 202, refund.text
    final = await stack.scalar("SELECT status FROM fraud_reviews WHERE id = :r", r=review_id)
    if final == "refunded":
        assert (release.status_code, release.json()["code"]) == (409, "review_already_decided")
    else:
        assert (final, release.status_code) == ("released", 200), release.text
    await stack.wait_refund(refund.json()["id"], {"SUCCESS"})
    assert await stack.scalar("SELECT count(*) FROM refunds WHERE payment_id = :p", p=pid) == 1
    wallet = await stack.wallet(tok)
    assert (wallet["available_credits"], wallet["locked_credits"]) == (0, 0)


async def test_a_release_before_payment_does_not_waive_what_the_payment_shows(
    stacks: StackFactory,
) -> None:
    """A reviewer released an order-stage review before the buyer paid, on what the order
    showed. The payment then comes from a deny-listed VPA (paid-stage score 100): that is
    new evidence the release never saw, so the credits go under review again rather than
    straight to the member."""
    stack = await stacks(**tight(fraud_new_account_weight=70))
    tok = stack.token()
    made = await order(stack, tok, pack_code="pack_1000")
    assert made.status_code == 201, made.text
    pid = made.json()["id"]
    review_id = await stack.scalar("SELECT id FROM fraud_reviews WHERE payment_id = :p", p=pid)
    url = f"/v1/fraud/reviews/{review_id}/decision"
    early = await stack.api.post(
        url, json={"decision": "release", "reason": "looks fine"}, headers=staff(stack)
    )
    assert early.status_code == 200, early.text
    deny = await stack.api.post(
        "/v1/fraud/lists",
        json={
            "list": "deny",
            "kind": "vpa",
            "value": "testsuccess@gocash",
            "reason": "chargebacks",
        },
        headers=staff(stack),
    )
    assert deny.status_code == 201, deny.text
    await stack.pay(made.json(), method="upi")
    await stack.wait_status(tok, pid, {"CREDITED"})
    for _ in range(100):
        if (await stack.wallet(tok))["locked_credits"]:
            break
        await asyncio.sleep(0.1)
    wallet = await stack.wallet(tok)
    assert (wallet["available_credits"], wallet["locked_credits"]) == (0, 12000)
    review = await stack.scalar(
        "SELECT json_build_array(stage, status, score, rules) FROM fraud_reviews WHERE id = :r",
        r=review_id,
    )
    assert review == ["paid", "pending", 100, ["deny_list"]]
    # A reviewer decides again, now on the paid stage's evidence.
    done = await stack.api.post(
        url, json={"decision": "release", "reason": "VPA cleared"}, headers=staff(stack)
    )
    assert (done.status_code, done.json()["status"]) == (200, "released"), done.text
    wallet = await stack.wallet(tok)
    assert (wallet["available_credits"], wallet["locked_credits"]) == (12000, 0)
