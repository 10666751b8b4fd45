"""A flood of forged webhooks from one address cannot keep real ones out: refused
deliveries are charged to their source's bucket after the signature check and answered 429
once it is spent, while the sandbox's correctly signed deliveries, from the same loopback
address in the middle of the flood, are all taken on their first attempt."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter

import pytest

from commdesk_billing.gateway import signature
from tests.harness.stack import StackFactory, webhook_body

pytestmark = pytest.mark.slow

FORGED = 200
BURST = 5


async def test_forged_flood_does_not_starve_signed_webhooks(stacks: StackFactory) -> None:
    stack = await stacks(
        # One refusal a minute, five at once: the test ends well within the minute.
        rate_limit_webhooks_ip=1,
        rate_limit_webhooks_ip_burst=BURST,
        # No status polling: a payment is credited only if its webhook got in.
        payment_sync_after_s=3600,
    )
    started = time.monotonic()
    buyers = [stack.token() for _ in range(5)]
    orders = [await stack.buy(tok) for tok in buyers]
    statuses: list[int] = []

    async def forge(n: int) -> None:
        for i in range(n):
            body = webhook_body(
                orders[i % len(orders)]["order_id"],
                order_amount="300.00",
                payment_amount="300.00",
                cf_payment_id=str(10**9 + i),
            )
            r = await stack.signed_webhook(body, secret="not-our-secret-" + uuid.uuid4().hex)
            statuses.append(r.status_code)
            await asyncio.sleep(0)

    flood = [asyncio.create_task(forge(FORGED // 4)) for _ in range(4)]
    # The real deliveries: the sandbox signs and posts them as each payment succeeds.
    for order in orders:
        await stack.pay(order)
    await asyncio.gather(*flood)
    for tok, order in zip(buyers, orders, strict=True):
        done = await stack.wait_status(tok, order["id"], {"CREDITED"})
        assert done["credits_granted"] == 3200
    assert time.monotonic() - started < 55  # no token came back during the test
    assert Counter(statuses) == {401: BURST, 429: FORGED - BURST}
    # Every real delivery was taken at its first attempt: none refused, none retried.
    for order in orders:
        log = (
            await stack.sandbox.get("/_sandbox/webhooks", params={"order_id": order["order_id"]})
        ).json()
        assert [(d["attempt"], d["status_code"]) for d in log] == [(1, 200)], log
    # Stored and processed, each once; nothing of the forged ones was stored.
    assert (
        await stack.scalar(
            "SELECT count(*) FILTER (WHERE status = 'processed') || '/' || count(*) "
            "FROM payment_webhooks"
        )
        == f"{len(orders)}/{len(orders)}"
    )
    # With the bucket spent, a forged delivery to another webhook route is refused too...
    forged = await stack.api.post(
        "/v1/webhooks/cashfree/subscriptions",
        content=b"{}",
        headers={"content-type": "application/json", "x-webhook-signature": "x"},
    )
    assert forged.status_code == 429
    assert forged.json()["code"] == "rate_limited"
    assert forged.headers["ratelimit-policy"] == '"webhooks-ip";q=1;w=60'
    assert forged.headers["ratelimit"].startswith('"webhooks-ip";r=0;t=')
    # The next token comes within the minute; the bucket is full again in five.
    assert 0 < int(forged.headers["retry-after"]) <= 60
    assert 240 < int(forged.headers["ratelimit"].split("t=")[1]) <= 300
    # ...and a correctly signed one still goes through: never limited, never charged.
    body = b'{"type":"SUBSCRIPTION_STATUS_CHANGED","data":{}}'
    ts = str(int(time.time() * 1000))
    secret = stack.settings.cashfree_client_secret.get_secret_value()
    signed = await stack.api.post(
        "/v1/webhooks/cashfree/subscriptions",
        content=body,
        headers={
            "content-type": "application/json",
            "x-webhook-timestamp": ts,
            "x-webhook-signature": signature.sign(secret, ts, body),
        },
    )
    assert signed.status_code == 200, signed.text
    assert "ratelimit" not in signed.headers
