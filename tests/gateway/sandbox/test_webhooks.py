"""Webhooks: shapes, signatures, retries with attempt numbers, and the delivery faults."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import httpx

from tests.gateway.sandbox.conftest import unique
from tests.gateway.sandbox.helpers import create_order, pay, upi_collect
from tests.gateway.sandbox.servers import Receiver
from tests.gateway.sandbox.strict_models import PayOrderEntity, parse
from tests.gateway.sandbox.webhook_checks import attempts, keys, payment_hook


async def checkout(api: httpx.AsyncClient, session_id: str, method: str, outcome: str) -> None:
    response = await api.post(
        "/pg/view/checkout",
        data={"payment_session_id": session_id, "payment_method": method, "outcome": outcome},
    )
    assert response.status_code == 200, response.text


async def delivery_log(api: httpx.AsyncClient, order_id: str) -> list[dict[str, Any]]:
    response = await api.get("/_sandbox/webhooks", params={"order_id": order_id})
    rows: list[dict[str, Any]] = response.json()
    return rows


async def test_each_outcome_sends_its_webhook(api: httpx.AsyncClient, receiver: Receiver) -> None:
    expected = {
        "testsuccess@gocash": "PAYMENT_SUCCESS_WEBHOOK",
        "testfailure@gocash": "PAYMENT_FAILED_WEBHOOK",
        "testuserdropped@gocash": "PAYMENT_USER_DROPPED_WEBHOOK",
    }
    for vpa, event_type in expected.items():
        name = unique("outcome")
        order = await create_order(
            api, amount=2, notify_url=receiver.hook(name), order_tags={"k": "v"}
        )
        started = parse(
            PayOrderEntity, (await pay(api, order.payment_session_id, upi_collect(vpa))).content
        )
        (hook,) = await receiver.wait_for(name, 1)
        event = payment_hook(hook)
        assert event.type == event_type
        assert event.data.payment.cf_payment_id == started.cf_payment_id
        assert event.data.order.order_id == order.order_id
        assert event.data.order.order_tags == {"k": "v"}
        assert event.data.customer_details.customer_id == "customer_42"
        # Amounts keep their two decimals in the signed bytes.
        assert b'"order_amount":2.00' in hook.body and b'"payment_amount":2.00' in hook.body
        assert hook.headers["x-webhook-attempt"] == "1"


async def test_non_200_answers_are_retried_with_attempt_numbers(
    api: httpx.AsyncClient, receiver: Receiver
) -> None:
    name = unique("retry")
    # 201 and 302 count as failures too: Cashfree wants exactly 200.
    order = await create_order(api, notify_url=receiver.hook(name, answers=[500, 201, 302]))
    await checkout(api, order.payment_session_id, "card", "success")
    hooks = await receiver.wait_for(name, 4)
    assert attempts(hooks) == [1, 2, 3, 4]
    assert len(keys(hooks)) == 1  # one event, one idempotency key across retries
    assert len({h.body for h in hooks}) == 1  # the same bytes each time
    for hook in hooks:
        payment_hook(hook)  # each attempt signed afresh and valid
    gaps = [b.at - a.at for a, b in itertools.pairwise(hooks)]
    assert gaps[0] >= 0.15 and gaps[1] >= 0.35 and gaps[2] >= 0.55  # schedule 0.2, 0.4, 0.6
    await asyncio.sleep(0.1)
    log = await delivery_log(api, order.order_id)
    assert [(r["attempt"], r["status_code"], r["outcome"]) for r in log] == [
        (1, 500, "failed"),
        (2, 201, "failed"),
        (3, 302, "failed"),
        (4, 200, "delivered"),
    ]


async def test_retries_stop_after_the_schedule(api: httpx.AsyncClient, receiver: Receiver) -> None:
    name = unique("giveup")
    order = await create_order(api, notify_url=receiver.hook(name, answers=[500] * 10))
    await checkout(api, order.payment_session_id, "netbanking", "failure")
    await receiver.wait_for(name, 4)
    await asyncio.sleep(1.0)
    assert attempts(receiver.got(name)) == [1, 2, 3, 4]


async def test_unreachable_receiver_is_logged_and_retried(api: httpx.AsyncClient) -> None:
    order = await create_order(api, notify_url="http://127.0.0.1:9/unreachable")
    await checkout(api, order.payment_session_id, "upi", "failure")
    for _ in range(60):
        log = await delivery_log(api, order.order_id)
        if len(log) == 4:
            break
        await asyncio.sleep(0.05)
    assert [r["attempt"] for r in log] == [1, 2, 3, 4]
    assert all(r["outcome"] == "failed" and r["status_code"] is None for r in log)
    assert log[0]["error"] == "ConnectError"


async def test_a_later_event_has_another_idempotency_key(
    api: httpx.AsyncClient, receiver: Receiver
) -> None:
    name = unique("keys")
    order = await create_order(api, notify_url=receiver.hook(name))
    await checkout(api, order.payment_session_id, "upi", "failure")
    await checkout(api, order.payment_session_id, "upi", "success")
    hooks = await receiver.wait_for(name, 2)
    assert len(keys(hooks)) == 2


async def test_dropped_webhooks_never_arrive(api: httpx.AsyncClient, receiver: Receiver) -> None:
    await api.patch("/_sandbox/faults", json={"webhook_drop_rate": 1})
    name = unique("drop")
    order = await create_order(api, notify_url=receiver.hook(name))
    await checkout(api, order.payment_session_id, "upi", "success")
    await asyncio.sleep(0.5)
    assert receiver.got(name) == []
    log = await delivery_log(api, order.order_id)
    assert [(r["event_type"], r["outcome"]) for r in log] == [
        ("PAYMENT_SUCCESS_WEBHOOK", "dropped")
    ]


async def test_duplicated_webhooks(api: httpx.AsyncClient, receiver: Receiver) -> None:
    await api.patch("/_sandbox/faults", json={"webhook_duplicates": 3})
    name = unique("dup")
    order = await create_order(api, notify_url=receiver.hook(name))
    await checkout(api, order.payment_session_id, "upi", "success")
    hooks = await receiver.wait_for(name, 3)
    await asyncio.sleep(0.2)
    assert len(receiver.got(name)) == 3
    assert len(keys(hooks)) == 1 and len({h.body for h in hooks}) == 1
    for hook in hooks:
        assert payment_hook(hook).type == "PAYMENT_SUCCESS_WEBHOOK"


async def test_out_of_order_webhooks(api: httpx.AsyncClient, receiver: Receiver) -> None:
    await api.patch("/_sandbox/faults", json={"webhook_reorder_window_ms": 400})
    name = unique("reorder")
    order = await create_order(api, notify_url=receiver.hook(name))
    # Failed attempt first, then the successful one; the receiver gets them the other way.
    await checkout(api, order.payment_session_id, "card", "failure")
    await checkout(api, order.payment_session_id, "card", "success")
    hooks = await receiver.wait_for(name, 2)
    assert [payment_hook(h).type for h in hooks] == [
        "PAYMENT_SUCCESS_WEBHOOK",
        "PAYMENT_FAILED_WEBHOOK",
    ]


async def test_jitter_delays_deliveries(api: httpx.AsyncClient, receiver: Receiver) -> None:
    await api.patch("/_sandbox/faults", json={"webhook_jitter_ms": 300})
    names = [unique("jitter") for _ in range(6)]
    for name in names:
        order = await create_order(api, notify_url=receiver.hook(name))
        await checkout(api, order.payment_session_id, "upi", "success")
    for name in names:
        (hook,) = await receiver.wait_for(name, 1)
        payment_hook(hook)


async def test_default_webhook_url_gets_every_event(start_sandbox: Any, receiver: Receiver) -> None:
    from tests.gateway.sandbox.conftest import AUTH

    name = unique("default")
    url = start_sandbox(webhook_url=receiver.hook(name))
    async with httpx.AsyncClient(base_url=url, headers=AUTH) as client:
        order = await create_order(client)  # no notify_url of its own
        await checkout(client, order.payment_session_id, "upi", "user_dropped")
        (hook,) = await receiver.wait_for(name, 1)
    assert payment_hook(hook).type == "PAYMENT_USER_DROPPED_WEBHOOK"
