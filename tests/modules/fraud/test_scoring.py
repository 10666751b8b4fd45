"""Fraud scoring before an order opens, over the whole stack: block (403, nothing stored
but the refusal), review (the order opens, the credits are held until released or
refunded), allow and deny lists, and the same decisions with Redis unreachable."""

from __future__ import annotations

import asyncio
import socket
import uuid
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from commdesk_billing.security.jwt import Role
from commdesk_billing.telemetry.metrics import REDIS_FALLBACKS
from tests.harness.stack import FRAUD_RULES_OFF, Stack, StackFactory

pytestmark = pytest.mark.slow

PROBLEM = "application/problem+json"


def _dead_redis() -> SecretStr:
    """A Redis URL nothing listens on (a port just freed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return SecretStr(f"redis://127.0.0.1:{port}/0")


def tight(**rules: Any) -> dict[str, Any]:
    """Every rule off but the ones given (the harness turns them all off)."""
    return {**FRAUD_RULES_OFF, **rules}


async def order(
    stack: Stack, tok: str, *, device: str | None = None, pack_code: str = "pack_300"
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {tok}", "Idempotency-Key": uuid.uuid4().hex}
    if device is not None:
        headers["X-Device-Id"] = device
    return await stack.api.post(
        "/v1/payments/orders",
        json={"pack_code": pack_code, "customer_phone": "9876543210"},
        headers=headers,
    )


def staff(stack: Stack, role: Role = Role.finance_admin) -> dict[str, str]:
    return {"Authorization": f"Bearer {stack.token(f'{role.value}-1', role)}"}


async def user_id_of(stack: Stack, sub: str) -> str:
    return str(await stack.scalar("SELECT id FROM users WHERE external_id = :s", s=sub))


@pytest.mark.parametrize("redis", ["up", "down"])
async def test_velocity_blocks_the_third_order_and_stores_only_the_refusal(
    stacks: StackFactory, redis: str
) -> None:
    overrides = tight(fraud_user_velocity_max=2, fraud_user_velocity_weight=95)
    if redis == "down":
        overrides["redis_url"] = _dead_redis()
    stack = await stacks(**overrides)
    fallbacks = REDIS_FALLBACKS.labels("fraud_velocity")._value.get()
    sub = f"buyer-{uuid.uuid4().hex}"
    tok = stack.token(sub)
    # Ordinary traffic first: two orders, nothing fires.
    for _ in range(2):
        ok = await order(stack, tok, device="device-aaaa-0001")
        assert ok.status_code == 201, ok.text
        assert ok.json()["status"] == "ACTIVE"
    uid = await user_id_of(stack, sub)
    assert await stack.scalar("SELECT count(*) FROM fraud_events WHERE user_id = :u", u=uid) == 0

    blocked = await order(stack, tok, device="device-aaaa-0001")
    assert blocked.status_code == 403, blocked.text
    assert blocked.headers["content-type"] == PROBLEM
    body = blocked.json()
    assert body["code"] == "payment_blocked"
    assert "velocity" not in blocked.text  # the member is not told which rule
    # Nothing of the order was kept: still two payments, and one event naming the rule.
    assert await stack.scalar("SELECT count(*) FROM payments WHERE user_id = :u", u=uid) == 2
    events = await stack.scalar(
        "SELECT json_agg(json_build_array(kind, severity, payment_id, details->'features'))"
        " FROM fraud_events WHERE user_id = :u",
        u=uid,
    )
    assert events == [["velocity_user", "high", None, {"attempts": 3, "limit": 2}]]
    # Support sees why in the member's profile.
    r = await stack.api.get(f"/v1/fraud/profiles/{uid}", headers=staff(stack, Role.support))
    assert r.status_code == 200, r.text
    profile = r.json()
    assert (profile["blocked"], profile["highest_score"]) == (1, 95)
    assert profile["rules_fired"] == {"velocity_user": 1}
    assert [(a["action"], a["rules"]) for a in profile["assessments"]] == [
        ("block", ["velocity_user"]),
        ("allow", []),
        ("allow", []),
    ]
    assert profile["events"][0]["details"]["rule"] == "velocity_user"
    # Redis down: every decision above was made from SQL counts (and was the same).
    taken = REDIS_FALLBACKS.labels("fraud_velocity")._value.get() - fallbacks
    assert taken == (3 if redis == "down" else 0)


async def test_review_holds_the_credits_until_a_reviewer_releases_them(
    stacks: StackFactory,
) -> None:
    stack = await stacks(**tight(fraud_user_velocity_max=1, fraud_user_velocity_weight=60))
    sub = f"buyer-{uuid.uuid4().hex}"
    tok = stack.token(sub)
    first = await order(stack, tok)
    assert first.status_code == 201
    await stack.pay(first.json())
    await stack.wait_status(tok, first.json()["id"], {"CREDITED"})
    second = await order(stack, tok)
    assert second.status_code == 201, second.text  # review: the order opens
    pid = second.json()["id"]
    assert await stack.scalar("SELECT fraud_score FROM payments WHERE id = :p", p=pid) == 60
    await stack.pay(second.json())
    await stack.wait_status(tok, pid, {"CREDITED"})
    wallet = await stack.wallet(tok)
    # pack_300: 3200 credits each; the second purchase's are held.
    assert (wallet["available_credits"], wallet["locked_credits"]) == (3200, 3200)

    queue = await stack.api.get("/v1/fraud/reviews", headers=staff(stack, Role.support))
    assert queue.status_code == 200, queue.text
    (review,) = [r for r in queue.json()["data"] if r["payment_id"] == pid]
    assert (review["status"], review["score"], review["rules"]) == (
        "pending",
        60,
        ["velocity_user"],
    )
    assert review["hold_id"] is not None
    # A member cannot spend them meanwhile, nor release them through the hold API.
    r = await stack.api.post(
        f"/v1/holds/{review['hold_id']}/release",
        headers={"Authorization": f"Bearer {tok}", "Idempotency-Key": uuid.uuid4().hex},
    )
    assert r.status_code in (403, 404, 409), r.text
    # Support may read but not decide.
    url = f"/v1/fraud/reviews/{review['id']}/decision"
    body = {"decision": "release", "reason": "known member"}
    assert (
        await stack.api.post(url, json=body, headers=staff(stack, Role.support))
    ).status_code == 403
    done = await stack.api.post(url, json=body, headers=staff(stack))
    assert done.status_code == 200, done.text
    assert (done.json()["status"], done.json()["decided_role"]) == ("released", "finance_admin")
    wallet = await stack.wallet(tok)
    assert (wallet["available_credits"], wallet["locked_credits"]) == (6400, 0)
    # Idempotent: the same decision answers the review as it is; the other one is refused.
    again = await stack.api.post(url, json=body, headers=staff(stack))
    assert (again.status_code, again.json()["status"]) == (200, "released")
    other = await stack.api.post(
        url, json={"decision": "refund", "reason": "fraud"}, headers=staff(stack)
    )
    assert (other.status_code, other.json()["code"]) == (409, "review_already_decided")
    audits = await stack.scalar(
        "SELECT json_agg(action) FROM audit_logs WHERE target_id = :p", p=pid
    )
    assert audits == ["fraud.review.released"]


@pytest.mark.parametrize("how", ["decision", "refund_api"])
async def test_a_held_payment_refunded_releases_its_hold_in_the_same_flow(
    stacks: StackFactory, how: str
) -> None:
    stack = await stacks(**tight(fraud_new_account_weight=70))
    tok = stack.token()
    made = await order(stack, tok, pack_code="pack_1000")  # a new account, the largest pack
    assert made.status_code == 201, made.text
    pid = made.json()["id"]
    await stack.pay(made.json())
    await stack.wait_status(tok, pid, {"CREDITED"})
    assert (await stack.wallet(tok))["locked_credits"] == 12000
    review_id = await stack.scalar("SELECT id FROM fraud_reviews WHERE payment_id = :p", p=pid)
    if how == "decision":
        r = await stack.api.post(
            f"/v1/fraud/reviews/{review_id}/decision",
            json={"decision": "refund", "reason": "stolen card"},
            headers=staff(stack),
        )
        assert (r.status_code, r.json()["status"]) == (200, "refunded"), r.text
        refund_id = await stack.scalar("SELECT id FROM refunds WHERE payment_id = :p", p=pid)
    else:
        partial = await stack.refund(pid, amount_paise=10_000)
        assert (partial.status_code, partial.json()["code"]) == (409, "payment_not_refundable")
        r = await stack.refund(pid)
        assert r.status_code == 202, r.text
        refund_id = r.json()["id"]
    await stack.wait_refund(str(refund_id), {"SUCCESS"})
    wallet = await stack.wallet(tok)
    assert (wallet["available_credits"], wallet["locked_credits"]) == (0, 0)
    assert (
        await stack.scalar("SELECT status FROM fraud_reviews WHERE id = :r", r=review_id)
        == "refunded"
    )


async def test_allow_list_skips_scoring_and_deny_list_blocks(stacks: StackFactory) -> None:
    stack = await stacks(**tight(fraud_user_velocity_max=1, fraud_user_velocity_weight=95))
    sub = f"buyer-{uuid.uuid4().hex}"
    tok = stack.token(sub)
    assert (await order(stack, tok)).status_code == 201
    uid = await user_id_of(stack, sub)
    add = await stack.api.post(
        "/v1/fraud/lists",
        json={"list": "allow", "kind": "user", "value": uid, "reason": "staff account"},
        headers=staff(stack),
    )
    assert add.status_code == 201, add.text
    # Allow-listed: the velocity rule would block, but the member is not scored at all.
    for _ in range(3):
        assert (await order(stack, tok)).status_code == 201
    assert await stack.scalar("SELECT count(*) FROM fraud_events WHERE user_id = :u", u=uid) == 0
    # The same entry again is answered as it is; on the other list it is a conflict.
    again = await stack.api.post(
        "/v1/fraud/lists",
        json={"list": "allow", "kind": "user", "value": uid, "reason": "staff account"},
        headers=staff(stack),
    )
    assert (again.status_code, again.json()["id"]) == (200, add.json()["id"])
    clash = await stack.api.post(
        "/v1/fraud/lists",
        json={"list": "deny", "kind": "user", "value": uid, "reason": "staff account"},
        headers=staff(stack),
    )
    assert (clash.status_code, clash.json()["code"]) == (409, "fraud_list_conflict")

    # A deny-listed device blocks a fresh member with a clean history.
    deny = await stack.api.post(
        "/v1/fraud/lists",
        json={
            "list": "deny",
            "kind": "device",
            "value": "stolen-device-01",
            "reason": "chargebacks",
        },
        headers=staff(stack),
    )
    assert deny.status_code == 201
    other = stack.token()
    r = await order(stack, other, device="stolen-device-01")
    assert (r.status_code, r.json()["code"]) == (403, "payment_blocked")
    kind = await stack.scalar(
        "SELECT kind FROM fraud_events WHERE details->'features'->'listed' = '[\"device\"]'"
    )
    assert kind == "deny_list"
    # Off the list, the same member buys.
    gone = await stack.api.delete(f"/v1/fraud/lists/{deny.json()['id']}", headers=staff(stack))
    assert gone.status_code == 204
    assert (await order(stack, other, device="stolen-device-01")).status_code == 201
    assert (
        await stack.scalar("SELECT count(*) FROM audit_logs WHERE action LIKE 'fraud.list.%'") == 3
    )
    actions = await stack.scalar(
        "SELECT json_agg(action ORDER BY created_at) FROM audit_logs"
        " WHERE action LIKE 'fraud.list.%'"
    )
    assert actions == ["fraud.list.allow.added", "fraud.list.deny.added", "fraud.list.deny.removed"]


async def test_a_malformed_or_repeated_device_id_is_refused(stack: Stack) -> None:
    tok = stack.token()
    bad = await order(stack, tok, device="short")
    assert (bad.status_code, bad.json()["code"]) == (422, "invalid_device_id")
    twice = await stack.api.post(
        "/v1/payments/orders",
        json={"pack_code": "pack_300", "customer_phone": "9876543210"},
        headers=[
            ("Authorization", f"Bearer {tok}"),
            ("Idempotency-Key", uuid.uuid4().hex),
            ("X-Device-Id", "device-aaaa-0001"),
            ("X-Device-Id", "device-aaaa-0002"),
        ],
    )
    # Refused before any route runs, by the request hygiene's one-value headers (HPP).
    assert (twice.status_code, twice.json()["code"]) == (400, "duplicate_parameter")


async def wait_locked(stack: Stack, tok: str, credits: int, timeout_s: float = 20) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        if (await stack.wallet(tok))["locked_credits"] == credits:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"locked credits never reached {credits}")


@pytest.mark.parametrize("redis", ["up", "down"])
async def test_once_paid_many_accounts_on_one_vpa_put_the_credits_under_review(
    stacks: StackFactory, redis: str
) -> None:
    overrides = tight(fraud_instrument_accounts_max=1, fraud_instrument_accounts_weight=60)
    if redis == "down":
        overrides["redis_url"] = _dead_redis()
    stack = await stacks(**overrides)
    # Two members pay with the sandbox's one UPI VPA (testsuccess@gocash).
    first_tok, first = await stack.credited()
    second_tok = stack.token()
    made = await order(stack, second_tok)
    assert made.status_code == 201
    pid = made.json()["id"]
    await stack.pay(made.json(), method="upi")
    await stack.wait_status(second_tok, pid, {"CREDITED"})
    # fraud.detection scores it after crediting: the second account on the VPA is held.
    await wait_locked(stack, second_tok, 3200)
    assert (await stack.wallet(second_tok))["available_credits"] == 0
    assert await stack.scalar("SELECT fraud_score FROM payments WHERE id = :p", p=pid) == 60
    review = await stack.scalar(
        "SELECT json_build_array(stage, status, rules) FROM fraud_reviews WHERE payment_id = :p",
        p=pid,
    )
    assert review == ["paid", "pending", ["instrument_accounts"]]
    details = await stack.scalar(
        "SELECT details->'features' FROM fraud_events WHERE payment_id = :p", p=pid
    )
    assert details == {"accounts": 2, "limit": 1}
    # The first member (one account on the VPA then) was scored and left alone.
    assert await stack.scalar(
        "SELECT json_build_array(score, action, instrument) FROM fraud_assessments "
        "WHERE payment_id = :p AND stage = 'paid'",
        p=first["id"],
    ) == [0, "allow", "vpa:testsuccess@gocash"]
    assert (await stack.wallet(first_tok))["locked_credits"] == 0


async def test_racing_decisions_on_one_review_apply_one(stacks: StackFactory) -> None:
    stack = await stacks(**tight(fraud_new_account_weight=70))
    tok = stack.token()
    made = await order(stack, tok, pack_code="pack_1000")
    pid = made.json()["id"]
    await stack.pay(made.json())
    await stack.wait_status(tok, pid, {"CREDITED"})
    review_id = await stack.scalar("SELECT id FROM fraud_reviews WHERE payment_id = :p", p=pid)
    url = f"/v1/fraud/reviews/{review_id}/decision"
    answers = await asyncio.gather(
        *(
            stack.api.post(url, json={"decision": d, "reason": "race"}, headers=staff(stack))
            for d in ("release", "refund", "release", "refund")
        )
    )
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [200, 200, 409, 409], [r.text for r in answers]
    final = await stack.scalar("SELECT status FROM fraud_reviews WHERE id = :r", r=review_id)
    refunds = await stack.scalar("SELECT count(*) FROM refunds WHERE payment_id = :p", p=pid)
    if final == "refunded":
        assert refunds == 1
        refund_id = await stack.scalar("SELECT id FROM refunds WHERE payment_id = :p", p=pid)
        await stack.wait_refund(str(refund_id), {"SUCCESS"})
        wallet = await stack.wallet(tok)
        assert (wallet["available_credits"], wallet["locked_credits"]) == (0, 0)
    else:
        assert (final, refunds) == ("released", 0)
        wallet = await stack.wallet(tok)
        assert (wallet["available_credits"], wallet["locked_credits"]) == (12000, 0)
    assert (
        await stack.scalar(
            "SELECT count(*) FROM audit_logs WHERE action LIKE 'fraud.review.%' AND target_id = :p",
            p=pid,
        )
        == 1
    )


async def test_the_kill_switch_scores_nothing(stack: Stack, variant: Any) -> None:
    device = f"kill-switch-{uuid.uuid4().hex[:8]}"
    deny = await stack.api.post(
        "/v1/fraud/lists",
        json={"list": "deny", "kind": "device", "value": device, "reason": "test"},
        headers=staff(stack),
    )
    assert deny.status_code == 201
    sub = f"buyer-{uuid.uuid4().hex}"
    tok = stack.token(sub)
    assert (await order(stack, tok, device=device)).status_code == 403
    # The same database and lists, through an API with scoring switched off.
    off = await variant(fraud_enabled=False)
    for _ in range(2):
        assert (await order(off, tok, device=device)).status_code == 201
    uid = await user_id_of(stack, sub)
    assessed = await stack.scalar(
        "SELECT count(*) FROM fraud_assessments WHERE user_id = CAST(:u AS uuid)", u=uid
    )
    assert assessed == 1  # the one refusal, before the switch
    await stack.api.delete(f"/v1/fraud/lists/{deny.json()['id']}", headers=staff(stack))
