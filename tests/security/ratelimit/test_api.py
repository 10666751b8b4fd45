"""The limits as a caller meets them, on a second API process of the shared stack with
tight limits and Redis keys of its own: per user, per address, per class; 429 problem,
Retry-After and the RateLimit headers, on refusals and on answers that went through."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from commdesk_billing.security.jwt import Role
from tests.harness.ratelimits import GENEROUS_RATE_LIMITS
from tests.harness.stack import Stack

Variant = Callable[..., Awaitable[Stack]]


def _tight(stack: Stack, **limits: Any) -> dict[str, Any]:
    # A prefix of its own: buckets nobody else's requests have touched.
    prefix = stack.settings.redis_key_prefix + f"rl{uuid.uuid4().hex[:6]}."
    return {**GENEROUS_RATE_LIMITS, "redis_key_prefix": prefix, **limits}


def _auth(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


async def test_per_user_per_address_and_refusals_charge_nothing(
    shared_stack: Stack, variant: Variant
) -> None:
    s = await variant(
        **_tight(
            shared_stack,
            rate_limit_reads_user=3,
            rate_limit_reads_user_burst=3,
            # One a minute, 8 at once: no refill within the test, however slow the machine.
            rate_limit_reads_ip=1,
            rate_limit_reads_ip_burst=8,
        )
    )
    alice, bob = s.token(), s.token()
    first = await s.api.get("/v1/wallets/me", headers=_auth(alice))
    assert first.status_code == 200
    # One token every 20 s; the user's bucket full again 20 s after one request.
    assert first.headers["ratelimit-policy"] == '"reads";q=3;w=60, "reads-ip";q=1;w=60'
    assert first.headers["ratelimit"] == '"reads";r=2;t=20, "reads-ip";r=7;t=60'
    for _ in range(2):
        assert (await s.api.get("/v1/wallets/me", headers=_auth(alice))).status_code == 200
    refused = await s.api.get("/v1/wallets/me", headers=_auth(alice))
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.headers["retry-after"] == "20"
    assert refused.headers["ratelimit-policy"] == '"reads";q=3;w=60, "reads-ip";q=1;w=60'
    # The refusal charged neither bucket: the address still has the 5 it had.
    assert refused.headers["ratelimit"] == '"reads";r=0;t=60, "reads-ip";r=5;t=180'
    assert refused.json()["request_id"] == refused.headers["x-request-id"]
    assert {k: v for k, v in refused.json().items() if k != "request_id"} == {
        "type": "urn:commdesk:billing:problem:rate_limited",
        "title": "Too many requests",
        "status": 429,
        "code": "rate_limited",
        "detail": "the reads rate limit is spent; retry after 20 s",
        "retry_after_s": 20,
    }
    assert refused.headers["x-request-id"]
    # Another user from the same address has a bucket of their own...
    for _ in range(3):
        assert (await s.api.get("/v1/wallets/me", headers=_auth(bob))).status_code == 200
    # ...and the address's is what stops a caller without a (valid) token: 2 left of 8.
    forged = {"Authorization": "Bearer not-a-token"}
    assert [(await s.api.get("/v1/wallets/me", headers=forged)).status_code for _ in range(3)] == [
        401,
        401,
        429,
    ]
    # Probes and scrapes are never counted.
    health = await s.api.get("/healthz")
    assert health.status_code == 200 and "ratelimit" not in health.headers


async def test_each_class_has_its_own_buckets(shared_stack: Stack, variant: Variant) -> None:
    s = await variant(
        **_tight(
            shared_stack,
            rate_limit_orders_user=1,
            rate_limit_orders_user_burst=1,
            rate_limit_money_user=2,
            rate_limit_money_user_burst=2,
        )
    )
    tok = s.token()
    order = await s.buy(tok)
    assert order["status"] == "ACTIVE"
    again = await s.api.post(
        "/v1/payments/orders",
        json={"pack_code": "pack_300", "customer_phone": "9876543210"},
        headers={**_auth(tok), "Idempotency-Key": uuid.uuid4().hex},
    )
    assert again.status_code == 429
    assert again.json()["detail"] == "the orders rate limit is spent; retry after 60 s"
    assert again.headers["ratelimit-policy"].startswith('"orders";q=1;w=60, "orders-ip";')
    # Money-moving routes count apart from orders, whatever the route answers.
    wallet = (await s.api.get("/v1/wallets/me", headers=_auth(tok))).json()
    debit = {"credits": 1, "reason": "test", "description": "x"}
    answers = [
        await s.api.post(
            f"/v1/wallets/{wallet['id']}/debits",
            json=debit,
            headers={**_auth(tok), "Idempotency-Key": uuid.uuid4().hex},
        )
        for _ in range(3)
    ]
    assert [a.status_code != 429 for a in answers] == [True, True, False]
    assert answers[0].headers["ratelimit"].startswith('"money";r=1;t=30, "money-ip";')
    assert answers[2].headers["retry-after"] == "30"
    # Reads were never touched by either.
    assert (await s.api.get("/v1/wallets/me", headers=_auth(tok))).status_code == 200


async def test_service_tokens_get_a_larger_bucket_and_no_address_one(
    shared_stack: Stack, variant: Variant
) -> None:
    s = await variant(
        **_tight(
            shared_stack,
            rate_limit_reads_user=2,
            rate_limit_reads_user_burst=1,
            rate_limit_service_factor=3,
        )
    )
    svc = s.token("community-service", Role.service)
    answers = [await s.api.get("/v1/wallets/me", headers=_auth(svc)) for _ in range(4)]
    assert answers[0].headers["ratelimit-policy"] == '"reads-service";q=6;w=60'
    assert answers[0].headers["ratelimit"] == '"reads-service";r=2;t=10'
    assert [a.status_code == 429 for a in answers] == [False, False, False, True]
