"""Vendor settlements on the sandbox clock and on demand: signed VENDOR_SETTLEMENT_* webhooks
shaped as cashfree.md §14.5, failures and reversals giving the balance back, a refund after
settlement leaving the vendor negative until its next settlement recovers it."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import httpx

from commdesk_billing.gateway.signature import verify
from tests.gateway.sandbox.conftest import CLIENT_SECRET, unique
from tests.gateway.sandbox.servers import Received, Receiver
from tests.gateway.sandbox.split_helpers import (
    active_vendor,
    paid_split_order,
    refund_and_wait,
    sapi,
    split_url,
    vendor_unsettled,
)

__all__ = ["sapi", "split_url"]

# Every field of cashfree.md §14.5's sample, no more.
SAMPLE_FIELDS = {
    "settlement_id",
    "status",
    "utr",
    "payment_amount",
    "settlement_initiated_on",
    "settlement_type",
    "settled_on",
    "reason",
    "adjustment",
    "settlement_amount",
    "service_charge",
    "service_tax",
    "amount_settled",
    "payment_from",
    "payment_till",
    "vendor_id",
    "vendor_transaction_amount",
    "account_mode",
    "settled_orders_count",
    "account_number",
    "ifsc",
    "vpa",
}


def _settlement(hook: Received) -> dict[str, Any]:
    assert verify(
        [CLIENT_SECRET],
        hook.headers["x-webhook-timestamp"],
        hook.body,
        hook.headers["x-webhook-signature"],
    )
    body = json.loads(hook.body, parse_float=Decimal)
    return {"type": body["type"], **body["data"]["settlement"]}


async def _hooks(receiver: Receiver, name: str, vendor_id: str, count: int) -> list[dict[str, Any]]:
    """The first `count` settlement webhooks about `vendor_id`, in order of status."""
    for wanted in range(count, 50):
        got = [_settlement(h) for h in await receiver.wait_for(name, wanted)]
        mine = [g for g in got if g["vendor_id"] == vendor_id]
        if len(mine) >= count:
            order = ["CREATED", "SUCCESS", "FAILED", "REVERSED"]
            return sorted(mine, key=lambda g: (g["settlement_id"], order.index(g["status"])))
    raise AssertionError("webhooks never came")


async def _hook_url(sapi: httpx.AsyncClient, receiver: Receiver, **settings: Any) -> str:
    name = unique("vs")
    patch = {"webhook_url": receiver.hook(name)} | settings
    assert (await sapi.patch("/_sandbox/easy-split", json=patch)).status_code == 200
    return name


async def _settle(sapi: httpx.AsyncClient, vendor_id: str) -> Any:
    response = await sapi.post(f"/_sandbox/easy-split/vendors/{vendor_id}/settle")
    assert response.status_code == 200, response.text
    return response.json()["settlement_id"]


async def test_balance_settles_t_plus_one_on_the_clock_with_signed_webhooks(
    sapi: httpx.AsyncClient, receiver: Receiver
) -> None:
    name = await _hook_url(sapi, receiver)
    vendor_id = await active_vendor(sapi)
    await paid_split_order(sapi, 100, [{"vendor_id": vendor_id, "amount": 60}])
    await sapi.post("/_sandbox/clock", json={"advance_seconds": 86_399})
    assert await vendor_unsettled(sapi, vendor_id) == b"60.00"
    await sapi.post("/_sandbox/clock", json={"advance_seconds": 1})
    created, success = await _hooks(receiver, name, vendor_id, 2)
    assert created["type"] == "VENDOR_SETTLEMENT_CREATED" and created["status"] == "CREATED"
    assert created["settled_on"] == "null" and created["amount_settled"] is None
    assert success["type"] == "VENDOR_SETTLEMENT_SUCCESS" and success["status"] == "SUCCESS"
    assert success["settled_on"] != "null" and success["amount_settled"] == Decimal("60.00")
    for hook in (created, success):
        assert hook["settlement_amount"] == hook["vendor_transaction_amount"] + hook["adjustment"]
        assert (hook["vendor_transaction_amount"], hook["adjustment"]) == (60, 0)
        assert hook["account_number"] == "XXXXXXXXXXX1191" and hook["ifsc"] == "YESB0000262"
        assert hook["account_mode"] == "BANK" and hook["settled_orders_count"] == 1
    assert created["settlement_id"] == success["settlement_id"]
    assert set(created) - {"type"} == SAMPLE_FIELDS == set(success) - {"type"}
    assert isinstance(created["settlement_id"], int)  # a number, as in the sample
    assert created["payment_from"] == created["payment_till"]  # dates, "2023-06-08"
    assert len(created["payment_from"]) == 10
    # Exactly as the sample writes them: the string "null", amounts with two decimals.
    mine = [h.body for h in receiver.got(name) if vendor_id.encode() in h.body]
    assert any(b'"settled_on":"null"' in b and b'"settlement_amount":60.00' in b for b in mine)
    assert await vendor_unsettled(sapi, vendor_id) == b"0.00"


async def test_refund_after_settlement_goes_negative_and_is_recovered(
    sapi: httpx.AsyncClient, receiver: Receiver
) -> None:
    name = await _hook_url(sapi, receiver)
    vendor_id = await active_vendor(sapi)
    order = await paid_split_order(sapi, 100, [{"vendor_id": vendor_id, "amount": 60}])
    assert await _settle(sapi, vendor_id) is not None
    await refund_and_wait(sapi, order.order_id, 50)
    assert await vendor_unsettled(sapi, vendor_id) == b"-30.00"
    assert await _settle(sapi, vendor_id) is None  # a negative balance waits for credits
    await paid_split_order(sapi, 100, [{"vendor_id": vendor_id, "amount": 60}])
    assert await vendor_unsettled(sapi, vendor_id) == b"30.00"
    await _settle(sapi, vendor_id)
    hooks = await _hooks(receiver, name, vendor_id, 4)
    second = [h for h in hooks if h["status"] == "SUCCESS"][-1]
    assert (second["vendor_transaction_amount"], second["adjustment"]) == (60, -30)
    assert second["settlement_amount"] == Decimal("30.00")
    assert second["settled_orders_count"] == 2  # the new order's share and the old refund
    assert await vendor_unsettled(sapi, vendor_id) == b"0.00"


async def test_failed_settlement_gives_the_balance_back(
    sapi: httpx.AsyncClient, receiver: Receiver
) -> None:
    name = await _hook_url(sapi, receiver, fail_vendor_settlements=1)
    vendor_id = await active_vendor(sapi)
    await paid_split_order(sapi, 100, [{"vendor_id": vendor_id, "percentage": 50}])
    await _settle(sapi, vendor_id)
    created, failed = await _hooks(receiver, name, vendor_id, 2)
    assert (created["status"], failed["type"]) == ("CREATED", "VENDOR_SETTLEMENT_FAILED")
    assert failed["reason"] == "Beneficiary bank account is closed"
    assert failed["settled_on"] == "null"
    assert await vendor_unsettled(sapi, vendor_id) == b"50.00"
    await _settle(sapi, vendor_id)  # the fault is used up: this one succeeds
    hooks = await _hooks(receiver, name, vendor_id, 4)
    assert hooks[-1]["status"] == "SUCCESS" and hooks[-1]["settlement_amount"] == 50
    assert await vendor_unsettled(sapi, vendor_id) == b"0.00"


async def test_reversed_settlement_gives_the_balance_back(
    sapi: httpx.AsyncClient, receiver: Receiver
) -> None:
    name = await _hook_url(
        sapi, receiver, reverse_vendor_settlements=1, initiated_event="VENDOR_SETTLEMENT_INITIATED"
    )
    vendor_id = await active_vendor(sapi, bank=None, upi={"vpa": "club@upi", "account_holder": "C"})
    await paid_split_order(sapi, 100, [{"vendor_id": vendor_id, "amount": 12.34}])
    await _settle(sapi, vendor_id)
    created, success, reversed_ = await _hooks(receiver, name, vendor_id, 3)
    assert created["type"] == "VENDOR_SETTLEMENT_INITIATED"
    assert success["type"] == "VENDOR_SETTLEMENT_SUCCESS"
    assert reversed_["type"] == "VENDOR_SETTLEMENT_REVERSED" and reversed_["status"] == "REVERSED"
    assert created["account_mode"] == "UPI" and created["vpa"] == "club@upi"
    assert created["account_number"] is None
    assert await vendor_unsettled(sapi, vendor_id) == b"12.34"


async def test_settlement_webhooks_take_the_delivery_faults(
    sapi: httpx.AsyncClient, receiver: Receiver
) -> None:
    name = await _hook_url(sapi, receiver)
    vendor_id = await active_vendor(sapi)
    await paid_split_order(sapi, 100, [{"vendor_id": vendor_id, "amount": 1}])
    assert (await sapi.patch("/_sandbox/faults", json={"webhook_duplicates": 2})).status_code == 200
    await _settle(sapi, vendor_id)
    hooks = await receiver.wait_for(name, 4)
    keys = [h.headers["x-idempotency-key"] for h in hooks]
    assert len(set(keys)) == 2 and all(keys.count(k) == 2 for k in keys)


async def test_blocked_vendor_is_not_settled_and_unknown_vendor_404(
    sapi: httpx.AsyncClient,
) -> None:
    vendor_id = await active_vendor(sapi)
    await paid_split_order(sapi, 100, [{"vendor_id": vendor_id, "amount": 10}])
    await sapi.post(f"/_sandbox/easy-split/vendors/{vendor_id}", json={"action": "block"})
    assert await _settle(sapi, vendor_id) is None
    assert await vendor_unsettled(sapi, vendor_id) == b"10.00"
    missing = await sapi.post("/_sandbox/easy-split/vendors/nobody/settle")
    assert missing.status_code == 404
    assert (await sapi.get("/pg/easy-split/vendors/nobody/balances")).status_code == 404


async def test_split_settings_refuse_bad_bodies(sapi: httpx.AsyncClient) -> None:
    for body in (
        [1],
        {"kyc_s": -1},
        {"webhook_url": "ftp://x"},
        {"nope": 1},
        {"initiated_event": "VENDOR_SETTLEMENT_DONE"},
    ):
        response = await sapi.patch("/_sandbox/easy-split", json=body)
        assert response.status_code == 400, (body, response.text)
    got = (await sapi.get("/_sandbox/easy-split")).json()
    assert got["kyc_s"] == 3600.0 and got["webhook_url"] is None


async def test_after_a_failure_the_clock_retries_a_cycle_later(
    sapi: httpx.AsyncClient, receiver: Receiver
) -> None:
    # Earlier tests' balances are settled first, so that the fault is this vendor's.
    await sapi.post("/_sandbox/clock", json={"advance_seconds": 2 * 86_400})
    vendor_id = await active_vendor(sapi)
    await paid_split_order(sapi, 100, [{"vendor_id": vendor_id, "amount": 7}])
    name = await _hook_url(sapi, receiver, fail_vendor_settlements=1)
    await sapi.post("/_sandbox/clock", json={"advance_seconds": 86_400})
    created, failed = await _hooks(receiver, name, vendor_id, 2)
    assert (created["status"], failed["status"]) == ("CREATED", "FAILED")
    await sapi.post("/_sandbox/clock", json={"advance_seconds": 86_399})
    assert await vendor_unsettled(sapi, vendor_id) == b"7.00"  # waits a whole cycle
    await sapi.post("/_sandbox/clock", json={"advance_seconds": 1})
    hooks = await _hooks(receiver, name, vendor_id, 4)
    assert [h["status"] for h in hooks] == ["CREATED", "FAILED", "CREATED", "SUCCESS"]
    assert await vendor_unsettled(sapi, vendor_id) == b"0.00"
