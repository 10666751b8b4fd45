"""POST /v1/payments/orders and friends: idempotency, refusals, a gateway that is down, and
who may call what."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from commdesk_billing.security.jwt import Role, Scope, issue_token
from tests.authz import PAYMENT_ALLOW
from tests.authz import STACK_CALLERS as CALLERS
from tests.harness.stack import Stack

PROBLEM = "application/problem+json"


def _h(tok: str, key: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {tok}"}
    if key:
        headers["Idempotency-Key"] = key
    return headers


BODY = {"pack_code": "pack_500", "customer_phone": "9876543210"}


async def test_the_same_key_replays_the_first_answer_byte_for_byte(stack: Stack) -> None:
    tok = stack.token()
    first = await stack.api.post("/v1/payments/orders", json=BODY, headers=_h(tok, "k-1"))
    again = await stack.api.post(
        "/v1/payments/orders",
        json={"customer_phone": "9876543210", "pack_code": "pack_500"},
        headers=_h(tok, "k-1"),
    )
    assert first.status_code == again.status_code == 201
    assert again.content == first.content and again.headers["idempotent-replayed"] == "true"
    other = await stack.api.post(
        "/v1/payments/orders", json={**BODY, "pack_code": "pack_150"}, headers=_h(tok, "k-1")
    )
    assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"
    # Keys belong to their caller: another buyer's "k-1" is a different order.
    theirs = await stack.api.post(
        "/v1/payments/orders", json=BODY, headers=_h(stack.token(), "k-1")
    )
    assert theirs.status_code == 201 and theirs.json()["id"] != first.json()["id"]
    count = await stack.scalar(
        "SELECT count(*) FROM payments WHERE idempotency_key LIKE :k", k="%:k-1"
    )
    assert count == 2


async def test_concurrent_duplicates_open_one_order(stack: Stack) -> None:
    tok = stack.token()
    answers = await asyncio.gather(
        *(
            stack.api.post("/v1/payments/orders", json=BODY, headers=_h(tok, "race"))
            for _ in range(8)
        )
    )
    assert {a.status_code for a in answers} == {201}
    assert len({a.json()["order_id"] for a in answers}) == 1
    assert len({a.content for a in answers}) == 1


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"pack_code": "pack_999", "customer_phone": "9876543210"}, 422, "unknown_pack"),
        ({"amount_paise": 50, "customer_phone": "9876543210"}, 422, "invalid_amount"),
        ({"amount_paise": 1050, "customer_phone": "9876543210"}, 422, "invalid_amount"),
        ({"amount_paise": 10**9, "customer_phone": "9876543210"}, 422, "invalid_amount"),
        ({"customer_phone": "9876543210"}, 422, "validation_error"),
        (
            {"pack_code": "pack_150", "amount_paise": 15000, "customer_phone": "9876543210"},
            422,
            "validation_error",
        ),
        ({"pack_code": "pack_150", "customer_phone": "12"}, 422, "validation_error"),
        (
            {"pack_code": "pack_150", "customer_phone": "9876543210", "buyer_state": "99"},
            422,
            "validation_error",
        ),
        (
            {"pack_code": "pack_150", "customer_phone": "9876543210", "x": 1},
            422,
            "validation_error",
        ),
        ({"pack_code": "pack_150\u0000", "customer_phone": "9876543210"}, 422, "validation_error"),
    ],
)
async def test_bad_orders_are_refused_with_problems(
    stack: Stack, body: dict[str, Any], status: int, code: str
) -> None:
    tok = stack.token()
    r = await stack.api.post("/v1/payments/orders", json=body, headers=_h(tok, uuid.uuid4().hex))
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM and r.json()["code"] == code
    count = await stack.scalar(
        "SELECT count(*) FROM payments WHERE idempotency_key LIKE :k",
        k=f"%{r.request.headers['idempotency-key']}",
    )
    assert count == 0


async def test_cashfree_down_is_a_503_and_the_same_key_resumes(stack: Stack) -> None:
    tok = stack.token()
    await stack.faults(error_rate=1.0)
    down = await stack.api.post("/v1/payments/orders", json=BODY, headers=_h(tok, "resume"))
    assert down.status_code == 503 and down.json()["code"] == "gateway_unavailable"
    assert down.headers["retry-after"] == "5"
    status = await stack.scalar(
        "SELECT status FROM payments WHERE idempotency_key = :k",
        k=f"{len(_sub(stack, tok))}:{_sub(stack, tok)}:resume",
    )
    assert status == "CREATED"
    await stack.faults(error_rate=0.0)
    up = await stack.api.post("/v1/payments/orders", json=BODY, headers=_h(tok, "resume"))
    assert up.status_code == 201 and up.json()["status"] == "ACTIVE"
    await stack.pay(up.json())
    await stack.wait_status(tok, up.json()["id"], {"CREDITED"})


async def test_a_flaky_cashfree_is_retried_by_the_client(stack: Stack) -> None:
    tok = stack.token()
    await stack.faults(error_rate=0.5, latency_ms=20)
    opened = 0
    for i in range(6):
        r = await stack.api.post("/v1/payments/orders", json=BODY, headers=_h(tok, f"flaky-{i}"))
        assert r.status_code in (201, 503), r.text
        opened += r.status_code == 201
    assert opened >= 3  # two retries per call make a 50 % error rate mostly invisible


async def test_too_many_open_orders_is_a_429(variant: Any) -> None:
    small = await variant(max_open_orders_per_user=2)
    tok = small.token()
    for i in range(2):
        r = await small.api.post("/v1/payments/orders", json=BODY, headers=_h(tok, f"o{i}"))
        assert r.status_code == 201
    r = await small.api.post("/v1/payments/orders", json=BODY, headers=_h(tok, "o3"))
    assert r.status_code == 429 and r.json()["code"] == "too_many_open_orders"


def _sub(stack: Stack, tok: str) -> str:
    import jwt

    return str(jwt.decode(tok, options={"verify_signature": False})["sub"])


async def test_listing_is_own_payments_newest_first_with_a_cursor(stack: Stack) -> None:
    tok = stack.token()
    ids = [(await stack.buy(tok, pack_code="pack_150"))["id"] for _ in range(3)]
    r = await stack.api.get("/v1/payments?limit=2", headers=_h(tok))
    page = r.json()
    assert [p["id"] for p in page["data"]] == ids[::-1][:2] and page["next_cursor"]
    r = await stack.api.get(f"/v1/payments?limit=2&cursor={page['next_cursor']}", headers=_h(tok))
    assert [p["id"] for p in r.json()["data"]] == [ids[0]] and r.json()["next_cursor"] is None
    bad = await stack.api.get("/v1/payments?cursor=garbage!", headers=_h(tok))
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_cursor"
    other = await stack.api.get("/v1/payments", headers=_h(stack.token()))
    assert other.json()["data"] == []


OK = {
    "GET /v1/packs": 200,
    "POST /v1/payments/orders": 201,
    "GET /v1/payments": 200,
    "GET /v1/payments/{payment_id}": 200,
    "GET /v1/payments/{payment_id}/timeline": 200,
    "POST /v1/payments/{payment_id}/retry": 200,
    "POST /v1/payments/{payment_id}/cancel": 200,
    "POST /v1/payments/{payment_id}/sync": 200,
}


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("route", sorted(PAYMENT_ALLOW))
async def test_payment_route_by_role(stack: Stack, route: str, caller: str) -> None:
    owner = f"owner-{uuid.uuid4().hex}"
    owner_tok = stack.token(owner)
    order = await stack.buy(owner_tok)
    await stack.pay(order, "upi", "failure")
    await stack.wait_status(owner_tok, order["id"], {"FAILED"})
    subs = {
        "owner": (owner, Role.member, []),
        "other_member": (None, Role.member, []),
        "finance_admin": (None, Role.finance_admin, []),
        "support": (None, Role.support, []),
        "auditor": (None, Role.auditor, []),
        "service": ("svc", Role.service, [Scope.wallets_read.value, Scope.wallets_debit.value]),
    }
    headers: dict[str, str] = {}
    if caller != "anonymous":
        sub, role, scopes = subs[caller]
        tok = issue_token(
            stack.settings, sub=sub or f"u-{uuid.uuid4().hex}", role=role, scopes=scopes
        )
        headers = _h(tok, uuid.uuid4().hex)
    method, path = route.split(" ")
    url = path.format(payment_id=order["id"])
    if method == "POST":
        r = await stack.api.post(
            url, json=BODY if url.endswith("orders") else None, headers=headers
        )
    else:
        r = await stack.api.get(url, headers=headers)
    expected = (
        401 if caller == "anonymous" else OK[route] if caller in PAYMENT_ALLOW[route] else 403
    )
    assert r.status_code == expected, (route, caller, r.text)
    if expected >= 400:
        assert r.headers["content-type"] == PROBLEM
        after = await stack.payment(owner_tok, order["id"])
        assert after["status"] == "FAILED" and after["retry_count"] == 0


async def test_a_system_actor_opens_an_order_once_per_key_apart_from_the_buyers_own(
    stack: Stack,
) -> None:
    """Auto-recharge and renewals open orders with no HTTP request: no Principal, no
    Idempotency-Key header, a key of their own that never collides with the buyer's."""
    from commdesk_billing.gateway.factory import cashfree_client
    from commdesk_billing.modules.payments.ordering import Buyer, open_order
    from commdesk_billing.modules.payments.schemas import OrderRequest

    subject = f"sys-{uuid.uuid4().hex[:8]}"
    req = OrderRequest(pack_code="pack_150", customer_phone="9876543210")
    client = cashfree_client(stack.settings)
    try:
        buyer = Buyer.system("auto-recharge", subject, "mandate-1:2026-12")
        first = await open_order(stack.engine, client, stack.settings, buyer, req)
        again = await open_order(stack.engine, client, stack.settings, buyer, req)
    finally:
        await client.aclose()
    assert first.status == 201 and first.replayed is False
    assert again.replayed is True and again.body == first.body
    count = await stack.scalar(
        "SELECT count(*) FROM payments WHERE idempotency_key = :k", k=buyer.scoped_key
    )
    who = await stack.scalar(
        "SELECT metadata->>'requested_by' FROM payments WHERE idempotency_key = :k",
        k=buyer.scoped_key,
    )
    assert (count, who, first.body["status"]) == (1, "system:auto-recharge", "ACTIVE")
    # The buyer using the very same key over HTTP opens an order of their own.
    tok = stack.token(subject)
    own = await stack.api.post(
        "/v1/payments/orders", json=BODY, headers=_h(tok, "mandate-1:2026-12")
    )
    assert own.status_code == 201 and own.json()["id"] != first.body["id"]
    with pytest.raises(ValueError):
        Buyer.system("auto:recharge", subject, "k")
