"""Payouts V2 webhooks: signed with the Payouts secret over the exact bytes, one per event in
order, retried, duplicated and dropped on demand, and logged."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx

from commdesk_billing.gateway.signature import verify
from tests.gateway.sandbox.conftest import CLIENT_SECRET, PAYOUT_CLIENT_SECRET
from tests.gateway.sandbox.payout_helpers import (
    INVALID_ACCOUNT,
    SUCCESS,
    SUCCESS_THEN_REVERSED,
    beneficiary_for,
    create_transfer,
    hook_to,
    of_transfer,
    wait_hooks,
    wait_transfer,
)
from tests.gateway.sandbox.payout_models import TransferWebhook
from tests.gateway.sandbox.servers import Received, Receiver
from tests.gateway.sandbox.strict_models import parse


def transfer_hook(hook: Received) -> TransferWebhook:
    headers = hook.headers
    assert headers["content-type"] == "application/json"
    assert headers["x-webhook-version"] == "2024-01-01"
    stamp = headers["x-webhook-timestamp"]
    assert stamp.isdigit() and abs(int(stamp) - time.time() * 1000) < 60_000
    assert len(headers["x-idempotency-key"]) == 44
    # The Payouts app's secret signs (cashfree.md §13.1), never the PG one.
    signature = headers["x-webhook-signature"]
    assert verify([PAYOUT_CLIENT_SECRET], stamp, hook.body, signature)
    assert not verify([CLIENT_SECRET], stamp, hook.body, signature)
    return parse(TransferWebhook, hook.body)


async def delivery_log(payouts: httpx.AsyncClient, transfer_id: str) -> list[dict[str, Any]]:
    response = await payouts.get("/_sandbox/payout-webhooks", params={"transfer_id": transfer_id})
    assert response.status_code == 200, response.text
    rows: list[dict[str, Any]] = response.json()
    return rows


async def test_success_then_acknowledged_then_reversed(
    payouts: httpx.AsyncClient, receiver: Receiver
) -> None:
    name = await hook_to(payouts, receiver)
    bene = await beneficiary_for(payouts, SUCCESS_THEN_REVERSED)
    transfer = await create_transfer(payouts, bene.beneficiary_id, amount=2)
    hooks = await wait_hooks(receiver, name, transfer.transfer_id, 3)
    events = [transfer_hook(h) for h in hooks]
    assert [(e.type, e.data.status, e.data.status_code) for e in events] == [
        ("TRANSFER_SUCCESS", "SUCCESS", "SENT_TO_BENEFICIARY"),
        ("TRANSFER_ACKNOWLEDGED", "SUCCESS", "COMPLETED"),
        ("TRANSFER_REVERSED", "REVERSED", "INVALID_ACCOUNT_FAIL"),
    ]
    assert {e.data.cf_transfer_id for e in events} == {transfer.cf_transfer_id}
    assert (
        events[0].data.transfer_utr and events[0].data.transfer_utr == events[2].data.transfer_utr
    )
    # Amounts keep their two decimals in the signed bytes.
    assert b'"transfer_amount":2.00' in hooks[0].body
    assert len({h.headers["x-idempotency-key"] for h in hooks}) == 3  # one per event


async def test_failed_and_rejected_send_their_event(
    payouts: httpx.AsyncClient, receiver: Receiver
) -> None:
    name = await hook_to(payouts, receiver)
    failed = await create_transfer(
        payouts, (await beneficiary_for(payouts, INVALID_ACCOUNT)).beneficiary_id
    )
    rejected = await create_transfer(
        payouts, (await beneficiary_for(payouts, SUCCESS)).beneficiary_id, transfer_mode="upi"
    )
    (hook,) = await wait_hooks(receiver, name, failed.transfer_id, 1)
    event = transfer_hook(hook)
    assert (event.type, event.data.status_code) == ("TRANSFER_FAILED", "INVALID_ACCOUNT_FAIL")
    (hook,) = await wait_hooks(receiver, name, rejected.transfer_id, 1)
    event = transfer_hook(hook)
    assert (event.type, event.data.status_code) == ("TRANSFER_REJECTED", "INVALID_MODE_FOR_PYID")


async def test_non_200_is_retried_with_the_same_bytes(
    payouts: httpx.AsyncClient, receiver: Receiver
) -> None:
    name = await hook_to(payouts, receiver, answers=[500, 503])
    bene = await beneficiary_for(payouts, INVALID_ACCOUNT)  # one event: TRANSFER_FAILED
    transfer = await create_transfer(payouts, bene.beneficiary_id)
    hooks = await wait_hooks(receiver, name, transfer.transfer_id, 3)
    assert [h.headers["x-webhook-attempt"] for h in hooks] == ["1", "2", "3"]
    assert len({h.body for h in hooks}) == 1
    assert len({h.headers["x-idempotency-key"] for h in hooks}) == 1
    for hook in hooks:
        transfer_hook(hook)  # each attempt signed afresh, each valid
    await asyncio.sleep(0.05)
    log = await delivery_log(payouts, transfer.transfer_id)
    assert [(r["attempt"], r["status_code"], r["outcome"]) for r in log] == [
        (1, 500, "failed"),
        (2, 503, "failed"),
        (3, 200, "delivered"),
    ]
    assert {r["transfer_id"] for r in log} == {transfer.transfer_id}
    assert {r["entity_id"] for r in log} == {transfer.cf_transfer_id}


async def test_duplicated_webhooks(payouts: httpx.AsyncClient, receiver: Receiver) -> None:
    name = await hook_to(payouts, receiver)
    await payouts.patch("/_sandbox/payout-faults", json={"webhook_duplicates": 3})
    bene = await beneficiary_for(payouts, INVALID_ACCOUNT)
    transfer = await create_transfer(payouts, bene.beneficiary_id)
    hooks = await wait_hooks(receiver, name, transfer.transfer_id, 3)
    assert len({h.body for h in hooks}) == 1
    assert len({h.headers["x-idempotency-key"] for h in hooks}) == 1
    assert [h.headers["x-webhook-attempt"] for h in hooks] == ["1", "1", "1"]


async def test_lost_webhooks_leave_the_status_api(
    payouts: httpx.AsyncClient, receiver: Receiver
) -> None:
    name = await hook_to(payouts, receiver)
    await payouts.patch("/_sandbox/payout-faults", json={"webhook_drop_rate": 1.0})
    bene = await beneficiary_for(payouts, SUCCESS)
    transfer = await create_transfer(payouts, bene.beneficiary_id)
    done = await wait_transfer(payouts, transfer.transfer_id, "COMPLETED")
    assert done.status == "SUCCESS"  # only polling tells
    await asyncio.sleep(0.1)
    assert of_transfer(receiver.got(name), transfer.transfer_id) == []
    log = await delivery_log(payouts, transfer.transfer_id)
    assert [(r["event_type"], r["outcome"]) for r in log] == [
        ("TRANSFER_SUCCESS", "dropped"),
        ("TRANSFER_ACKNOWLEDGED", "dropped"),
    ]


async def test_no_url_no_delivery_and_the_log_clears(payouts: httpx.AsyncClient) -> None:
    bene = await beneficiary_for(payouts, INVALID_ACCOUNT)
    transfer = await create_transfer(payouts, bene.beneficiary_id)
    await wait_transfer(payouts, transfer.transfer_id, "INVALID_ACCOUNT_FAIL")
    assert await delivery_log(payouts, transfer.transfer_id) == []  # nowhere to send it
    cleared = await payouts.delete("/_sandbox/payout-webhooks")
    assert cleared.status_code == 200 and json.loads(cleared.content) == []
