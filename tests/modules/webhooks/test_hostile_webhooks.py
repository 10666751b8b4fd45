"""Signed webhooks whose content cannot be stored or read, and deliveries that claim to be
one already stored but say something else: every one gets a definite answer (Cashfree
retries anything but a 200), and each is recorded once."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from typing import Any

from sqlalchemy import text

from commdesk_billing.gateway import signature
from commdesk_billing.modules.webhooks import service
from tests.harness.faults import Recorder
from tests.harness.stack import Stack, webhook_body

DEEP = b'{"type":"PAYMENT_SUCCESS_WEBHOOK","data":' + b"[" * 5000 + b"]" * 5000 + b"}"


async def _rows(stack: Stack, where: str, **params: Any) -> list[Any]:
    async with stack.engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT id, dedupe_key, event_type, status, outcome, duplicates, order_id, "
                f"payment_id FROM payment_webhooks WHERE {where} ORDER BY received_at"
            ),
            params,
        )
        return list(rows)


async def _by_body(stack: Stack, body: bytes) -> list[Any]:
    return await _rows(stack, "raw_body = :b", b=body)


def _refund_webhook(refund_id_json: str, order_id: str, amount: str, status: str) -> bytes:
    return (
        '{"data":{"refund":{"cf_refund_id":"1","cf_payment_id":"2","refund_id":'
        + refund_id_json
        + ',"order_id":"'
        + order_id
        + f'","refund_amount":{amount},"refund_currency":"INR","entity":"Refund",'
        f'"refund_status":"{status}","refund_arn":"1234"}}}},'
        '"event_time":"2026-11-26T12:00:01+05:30","type":"REFUND_STATUS_WEBHOOK"}'
    ).encode()


async def _assert_rejected_once(stack: Stack, body: bytes, outcome: str, faults: Recorder) -> None:
    """Answered 200 `rejected`, stored once as evidence; a retry is a duplicate of it."""
    first = await stack.signed_webhook(body)
    assert first.status_code == 200, first.text
    assert first.json()["status"] == "rejected"
    again = await stack.signed_webhook(body)
    assert again.status_code == 200
    assert again.json() == {"status": "duplicate", "webhook_id": first.json()["webhook_id"]}
    rows = await _by_body(stack, body)
    faults.record(
        f"a signed webhook whose body is hostile: {outcome}",
        injected=2,
        what="one delivery and its retry",
        lost=None,
        twice=max(0, len(rows) - 1) + sum(1 for r in rows if r.payment_id is not None),
        outcome="stored once as rejected, answered 200 so Cashfree stops; nothing acted on",
    )
    assert [
        (str(r.id), r.dedupe_key, r.event_type, r.status, r.outcome, r.duplicates, r.payment_id)
        for r in rows
    ] == [
        (
            first.json()["webhook_id"],
            f"unreadable:{hashlib.sha256(body).hexdigest()}",
            "(unreadable)",
            "rejected",
            f"body unreadable: {outcome}",
            1,
            None,
        )
    ]


async def test_a_signed_webhook_with_a_nul_in_an_id_is_rejected_and_kept(
    stack: Stack, faults: Recorder
) -> None:
    tok = stack.token()
    order = await stack.buy(tok)
    body = webhook_body(
        order["order_id"], order_amount="300.00", payment_amount="300.00", cf_payment_id="42"
    ).replace(b'"42"', b'"42\\u0000"')
    assert json.loads(body)["data"]["payment"]["cf_payment_id"] == "42\x00"
    await _assert_rejected_once(stack, body, "text contains a NUL character", faults)
    assert await _rows(stack, "order_id = :o", o=order["order_id"]) == []
    assert (
        await stack.scalar("SELECT count(*) FROM fraud_events WHERE payment_id = :p", p=order["id"])
        == 0
    )
    await asyncio.sleep(0.3)
    assert (await stack.payment(tok, order["id"]))["status"] == "ACTIVE"


async def test_a_nul_in_the_order_id_is_rejected_too(stack: Stack, faults: Recorder) -> None:
    body = webhook_body(
        "cdb_nul\\u0000order", order_amount="300.00", payment_amount="300.00", cf_payment_id="43"
    )
    await _assert_rejected_once(stack, body, "text contains a NUL character", faults)


async def test_a_signed_refund_webhook_with_a_lone_surrogate_is_rejected_and_kept(
    stack: Stack,
    faults: Recorder,
) -> None:
    body = _refund_webhook('"rf_\\ud800"', "cdb_some_order", "30.00", "SUCCESS")
    assert json.loads(body)["data"]["refund"]["refund_id"] == "rf_\ud800"
    await _assert_rejected_once(stack, body, "text contains an unpaired surrogate", faults)


async def test_a_lone_surrogate_in_a_key_or_the_type_is_rejected(
    stack: Stack, faults: Recorder
) -> None:
    in_key = b'{"type":"PAYMENT_SUCCESS_WEBHOOK","data":{"\\udfff":1}}'
    in_type = b'{"type":"REFUND_STATUS_WEBHOOK\\ud800","data":{}}'
    await _assert_rejected_once(stack, in_key, "text contains an unpaired surrogate", faults)
    await _assert_rejected_once(stack, in_type, "text contains an unpaired surrogate", faults)


async def test_a_signed_body_that_is_not_an_event_is_rejected_and_kept(
    stack: Stack, faults: Recorder
) -> None:
    await _assert_rejected_once(stack, b'{"hello": "world"}', "not a Cashfree event", faults)
    await _assert_rejected_once(stack, b"not json at all", "not JSON", faults)
    await _assert_rejected_once(stack, b'{"type": "X", "data": "\xff"}', "not JSON", faults)


async def test_a_body_nested_five_thousand_deep_is_refused_before_anything(stack: Stack) -> None:
    r = await stack.signed_webhook(DEEP)
    assert r.status_code == 400, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "json_too_deep"
    unsigned = await stack.api.post(
        "/v1/webhooks/cashfree", content=DEEP, headers={"content-type": "application/json"}
    )
    assert (unsigned.status_code, unsigned.json()["code"]) == (400, "json_too_deep")
    assert await _by_body(stack, DEEP) == []


async def test_the_receiver_bounds_depth_itself_behind_no_hygiene(stack: Stack) -> None:
    """Called without the request hygiene in front (a test, a future transport), the
    receiver still never parses a deep body: it keeps it as rejected."""
    body = DEEP.replace(b"WEBHOOK", b"WEBHOOK ")  # bytes of their own
    ts = str(int(time.time() * 1000))
    headers = {
        "x-webhook-timestamp": ts,
        "x-webhook-signature": signature.sign(
            stack.settings.cashfree_client_secret.get_secret_value(), ts, body
        ),
        "x-idempotency-key": "k\x00",  # unsigned and unstorable: not kept
    }
    receipt = await service.receive(stack.engine, stack.settings, body, headers, "127.0.0.1")
    assert receipt.outcome == "rejected"
    rows = await _by_body(stack, body)
    assert [(r.id, r.status, r.outcome) for r in rows] == [
        (receipt.webhook_id, "rejected", "body unreadable: nested deeper than 32 levels")
    ]
    kept = await stack.scalar(
        "SELECT headers FROM payment_webhooks WHERE id = :i", i=receipt.webhook_id
    )
    assert set(kept) == {"x-webhook-timestamp", "x-webhook-signature"}


async def test_a_webhook_saying_another_amount_under_a_stored_key_is_a_mismatch(
    stack: Stack,
    faults: Recorder,
) -> None:
    tok = stack.token()
    order = await stack.buy(tok)  # never paid: the lookups find nothing to credit
    honest = webhook_body(
        order["order_id"], order_amount="300.00", payment_amount="300.00", cf_payment_id="5151"
    )
    lying = webhook_body(
        order["order_id"], order_amount="300.00", payment_amount="3.00", cf_payment_id="5151"
    )
    first = await stack.signed_webhook(honest)
    assert (first.status_code, first.json()["status"]) == (200, "accepted")
    second = await stack.signed_webhook(lying)
    assert second.status_code == 200
    assert second.json()["status"] == "mismatch"
    assert second.json()["webhook_id"] != first.json()["webhook_id"]
    # Its own retry is a duplicate of it, and records nothing more.
    again = await stack.signed_webhook(lying)
    assert again.json() == {"status": "duplicate", "webhook_id": second.json()["webhook_id"]}
    # The honest one's retry is still a duplicate of the honest one.
    honest_again = await stack.signed_webhook(honest)
    assert honest_again.json() == {"status": "duplicate", "webhook_id": first.json()["webhook_id"]}

    rows = await _rows(stack, "order_id = :o", o=order["order_id"])
    key = f"PAYMENT_SUCCESS_WEBHOOK:{order['order_id']}:5151:SUCCESS"
    digest = hashlib.sha256(lying).hexdigest()
    assert [(str(r.id), r.dedupe_key, r.duplicates) for r in rows] == [
        (first.json()["webhook_id"], key, 1),
        (second.json()["webhook_id"], f"{key}:differs:{digest}", 1),
    ]
    assert (rows[1].status, rows[1].outcome) == (
        "rejected",
        f"differs from webhook {rows[0].id} stored under the same dedupe key: ['payment_amount']",
    )
    async with stack.engine.connect() as conn:
        fraud = list(
            await conn.execute(
                text(
                    "SELECT kind, severity, webhook_id, details FROM fraud_events "
                    "WHERE payment_id = :p"
                ),
                {"p": order["id"]},
            )
        )
    assert [(f.kind, f.severity, str(f.webhook_id), f.details) for f in fraud] == [
        (
            "webhook_content_mismatch",
            "high",
            second.json()["webhook_id"],
            {
                "fields": ["payment_amount"],
                "first_webhook_id": first.json()["webhook_id"],
                "disagrees_with_order": ["payment_amount"],
            },
        )
    ]
    await asyncio.sleep(0.5)
    status = (await stack.payment(tok, order["id"]))["status"]
    faults.record(
        "a signed webhook saying another amount under a stored key",
        injected=1,
        what="the honest delivery, then one with the amount changed (and its retry)",
        lost=None,
        twice=int(status != "ACTIVE"),
        outcome="recorded as `webhook_content_mismatch`, never acted on",
    )
    assert status == "ACTIVE"


async def test_a_refund_webhook_saying_another_amount_under_a_stored_key_is_a_mismatch(
    stack: Stack,
) -> None:
    body = lambda amount: _refund_webhook(  # noqa: E731
        '"rf_nobody_asked_for"', "cdb_no_such_order", amount, "SUCCESS"
    )
    first = await stack.signed_webhook(body("30.00"))
    assert first.json()["status"] == "unknown_order"
    second = await stack.signed_webhook(body("3000.00"))
    assert second.json()["status"] == "mismatch"
    rows = await _rows(stack, "order_id = :o", o="cdb_no_such_order")
    assert [(str(r.id), r.status, r.duplicates) for r in rows] == [
        (first.json()["webhook_id"], "ignored", 0),
        (second.json()["webhook_id"], "rejected", 0),
    ]
    fraud = await stack.scalar(
        "SELECT details FROM fraud_events WHERE webhook_id = :w AND kind = "
        "'webhook_content_mismatch'",
        w=second.json()["webhook_id"],
    )
    assert fraud == {
        "fields": ["refund_amount"],
        "first_webhook_id": first.json()["webhook_id"],
        "disagrees_with_refund": [],
        "refund_id": None,
    }
