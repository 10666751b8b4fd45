"""Our PG client's Easy Split and settlement-report calls against the sandbox over real HTTP:
vendors, split orders and refunds, balances, split recon, the report iterators, and vendor
settlement webhooks read by our verifier (forgeries refused)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from commdesk_billing.gateway.client import CashfreeClient
from commdesk_billing.gateway.errors import CashfreeConflict, CashfreeNotFound, CashfreeRejected
from commdesk_billing.gateway.models import Order, Refund
from commdesk_billing.gateway.sandbox import create_sandbox_app
from commdesk_billing.gateway.signature import sign
from commdesk_billing.gateway.split_models import (
    RefundShare,
    SplitShare,
    Vendor,
    VendorSettlementEvent,
    VendorSettlementWebhook,
)
from commdesk_billing.gateway.split_webhooks import Refused, read_vendor_settlement_webhook
from tests.gateway.sandbox.conftest import (
    AUTH,
    CLIENT_ID,
    CLIENT_SECRET,
    PAYOUT_CLIENT_SECRET,
    sandbox_config,
)
from tests.gateway.sandbox.servers import Receiver, ServerThread
from tests.gateway.sandbox.split_helpers import SPLIT_CONFIG

ACCOUNT = "026291800001191"
KYC = {"account_type": "BUSINESS", "business_type": "Education"}


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    server = ServerThread(create_sandbox_app(sandbox_config(**SPLIT_CONFIG))).start()
    yield server.url
    server.stop()


@pytest.fixture
async def cf(base: str) -> AsyncIterator[CashfreeClient]:
    async with CashfreeClient(
        base_url=f"{base}/pg",
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        timeout_s=5,
        backoff_s=0.02,
        max_retries=2,
    ) as client:
        yield client


@pytest.fixture
async def control(base: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=base, headers=AUTH, timeout=10) as client:
        yield client
        await client.patch("/_sandbox/easy-split", json={"webhook_url": None})


def _id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:16]}"


async def _vendor(cf: CashfreeClient, control: httpx.AsyncClient) -> str:
    vendor_id = _id("v")
    await cf.create_vendor(
        vendor_id=vendor_id,
        name="Chess Club Pune",
        email="club@example.com",
        phone="9876543210",
        kyc_details=KYC,
        account_holder="Chess Club Pune",
        bank_account_number=ACCOUNT,
        bank_ifsc="YESB0000262",
    )
    forced = await control.post(
        f"/_sandbox/easy-split/vendors/{vendor_id}", json={"action": "activate"}
    )
    assert forced.status_code == 200
    return vendor_id


async def _paid_order(
    cf: CashfreeClient, control: httpx.AsyncClient, amount_paise: int, shares: list[SplitShare]
) -> str:
    order_id = _id("o")
    order = await cf.create_order(
        order_id=order_id,
        amount_paise=amount_paise,
        customer_id="c_123",
        customer_phone="9876543210",
        order_splits=shares,
    )
    paid = await control.post(
        "/pg/view/checkout",
        data={
            "payment_session_id": order.payment_session_id or "",
            "payment_method": "upi",
            "outcome": "success",
        },
    )
    assert paid.status_code == 200
    return order_id


async def _refunded(cf: CashfreeClient, order_id: str, refund_id: str) -> Any:
    deadline = time.monotonic() + 5
    while (refund := await cf.fetch_refund(order_id, refund_id)).refund_status != "SUCCESS":
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    return refund


async def test_vendor_round_trip(cf: CashfreeClient, control: httpx.AsyncClient) -> None:
    vendor_id = _id("v")
    details: dict[str, Any] = {
        "vendor_id": vendor_id,
        "name": "Chess Club Pune",
        "email": "club@example.com",
        "phone": "9876543210",
        "kyc_details": KYC,
        "account_holder": "Chess Club Pune",
        "bank_account_number": ACCOUNT,
        "bank_ifsc": "YESB0000262",
    }
    created = await cf.create_vendor(**details)  # the docs' shape: objects
    assert (created.vendor_id, created.status) == (vendor_id, "IN_BENE_CREATION")
    assert created.bank is not None and created.bank.masked == "XXXX1191"
    assert ACCOUNT not in repr(created) and "9876543210" not in repr(created)
    # A repeat with the same details is the vendor already there; other details conflict.
    assert (await cf.create_vendor(**details)).vendor_id == vendor_id
    with pytest.raises(CashfreeConflict):
        await cf.create_vendor(**(details | {"bank_account_number": "00224412311300"}))
    fetched = await cf.get_vendor(vendor_id)  # the SDK's shape: lists
    assert fetched.bank is not None and fetched.bank.ifsc == "YESB0000262"
    assert fetched.schedule_option is not None and fetched.schedule_option.schedule_id == 1
    assert not fetched.active
    await control.post(f"/_sandbox/easy-split/vendors/{vendor_id}", json={"action": "activate"})
    assert (await cf.get_vendor(vendor_id)).active
    blocked = await cf.update_vendor(vendor_id, status="BLOCKED", name="Chess Club")
    assert (blocked.status, blocked.name) == ("BLOCKED", "Chess Club")
    moved = await cf.update_vendor(
        vendor_id, account_holder="Chess Club", vpa="club@upi", status="ACTIVE"
    )
    assert moved.status == "IN_BENE_CREATION" and moved.upi is not None
    assert "club@upi" not in repr(moved)
    balance = await cf.get_vendor_balance(vendor_id)
    assert (balance.vendor_id, balance.vendor_unsettled_paise) == (vendor_id, 0)
    assert balance.merchant_id == CLIENT_ID
    with pytest.raises(CashfreeNotFound):
        await cf.get_vendor("nobody_here")
    with pytest.raises(CashfreeRejected) as err:
        await cf.create_vendor(**(details | {"vendor_id": _id("v"), "phone": "12"}))
    assert (err.value.status, err.value.code) == (400, "phone_invalid")


def test_split_shares_are_checked_before_sending() -> None:
    for bad in (
        {"vendor_id": "v"},
        {"vendor_id": "v", "amount_paise": 1, "percentage": Decimal(1)},
        {"vendor_id": "v", "amount_paise": 0},
        {"vendor_id": "v", "percentage": Decimal("100.01")},
        {"vendor_id": "v", "percentage": Decimal("1.005")},
    ):
        with pytest.raises(ValueError):
            SplitShare(**bad)
    with pytest.raises(ValueError):
        RefundShare("v", -1)


async def test_split_order_refund_balance_and_recon(
    cf: CashfreeClient, control: httpx.AsyncClient
) -> None:
    v1 = await _vendor(cf, control)
    v2 = await _vendor(cf, control)
    shares = [SplitShare(v1, amount_paise=6_000), SplitShare(v2, percentage=Decimal("33.33"))]
    order_id = await _paid_order(cf, control, 10_000, shares)
    order = await cf.fetch_order(order_id)
    assert order.order_splits is not None
    assert [(s.vendor_id, s.amount_paise, s.percentage) for s in order.order_splits] == [
        (v1, 6_000, None),
        (v2, None, Decimal("33.33")),
    ]
    assert (await cf.get_vendor_balance(v1)).vendor_unsettled_paise == 6_000
    assert (await cf.get_vendor_balance(v2)).vendor_unsettled_paise == 3_333
    refund = await cf.create_refund(
        order_id=order_id,
        refund_id="r_1",
        amount_paise=2_000,
        refund_splits=[RefundShare(v1, 1_500)],
    )
    assert refund.refund_splits is not None
    assert [(s.vendor_id, s.amount_paise) for s in refund.refund_splits] == [(v1, 1_500)]
    await _refunded(cf, order_id, "r_1")
    assert (await cf.get_vendor_balance(v1)).vendor_unsettled_paise == 4_500
    assert (await cf.get_vendor_balance(v2)).vendor_unsettled_paise == 3_333
    # Without refund_splits: in proportion (60% and 33.33% of 10.00, rounded down).
    await cf.create_refund(order_id=order_id, refund_id="r_2", amount_paise=1_000)
    await _refunded(cf, order_id, "r_2")
    assert (await cf.get_vendor_balance(v1)).vendor_unsettled_paise == 4_500 - 300
    assert (await cf.get_vendor_balance(v2)).vendor_unsettled_paise == 3_333 - 999
    recon = await cf.get_split_order_recon(order_id)
    assert recon.settlement is None
    assert {(v.vendor_id, v.settlement_amount_paise) for v in recon.vendors} == {
        (v1, 4_200),
        (v2, 2_334),
    }
    with pytest.raises(CashfreeRejected) as err:
        await cf.create_order(
            order_id=_id("o"),
            amount_paise=1_000,
            customer_id="c_123",
            customer_phone="9876543210",
            order_splits=[SplitShare("nobody_here", amount_paise=100)],
        )
    assert err.value.code == "api_request_failed"
    assert err.value.message.endswith("vendor does not exist")


async def test_vendor_settlement_webhooks_are_read_and_forgeries_refused(
    cf: CashfreeClient, control: httpx.AsyncClient, receiver: Receiver
) -> None:
    name = _id("hook")
    patch = {"webhook_url": receiver.hook(name)}
    assert (await control.patch("/_sandbox/easy-split", json=patch)).status_code == 200
    vendor_id = await _vendor(cf, control)
    await _paid_order(cf, control, 10_000, [SplitShare(vendor_id, amount_paise=2_500)])
    settled = await control.post(f"/_sandbox/easy-split/vendors/{vendor_id}/settle")
    assert settled.json()["settlement_id"] is not None
    hooks = await receiver.wait_for(name, 2)
    events = [read_vendor_settlement_webhook(h.body, h.headers, [CLIENT_SECRET]) for h in hooks]
    assert {e.event for e in events} == {
        VendorSettlementEvent.CREATED,
        VendorSettlementEvent.SUCCESS,
    }
    for event in events:
        s = event.settlement
        assert (s.vendor_id, s.settlement_amount_paise) == (vendor_id, 2_500)
        assert s.settlement_amount_paise == (s.vendor_transaction_amount_paise or 0) + (
            s.adjustment_paise or 0
        )
        assert "1191" not in repr(event)
    created = next(e for e in events if e.event == VendorSettlementEvent.CREATED)
    assert created.settlement.settled_on is None  # the string "null"
    assert (await cf.get_vendor_balance(vendor_id)).vendor_unsettled_paise == 0

    hook = hooks[0]
    headers = dict(hook.headers)
    assert read_vendor_settlement_webhook(hook.body, headers, ["old", CLIENT_SECRET])
    forgeries: list[tuple[bytes, dict[str, str], list[str], str]] = [
        (
            hook.body.replace(b'"settlement_amount":25.00', b'"settlement_amount":99.99'),
            headers,
            [CLIENT_SECRET],
            "webhook_signature_invalid",
        ),
        (hook.body, headers, [PAYOUT_CLIENT_SECRET], "webhook_signature_invalid"),
        (
            hook.body,
            {k: v for k, v in headers.items() if k != "x-webhook-signature"},
            [CLIENT_SECRET],
            "webhook_unsigned",
        ),
    ]
    for body, forged_headers, secrets, code in forgeries:
        assert body != hook.body or forged_headers != headers or secrets != [CLIENT_SECRET]
        with pytest.raises(Refused) as err:
            read_vendor_settlement_webhook(body, forged_headers, secrets)
        assert err.value.code == code
    stamp = str(int(time.time() * 1000))
    for junk, code in (
        (b'{"type":"VENDOR_SETTLEMENT_SUCCESS","data":{}}', "webhook_unreadable"),
        (
            b'{"type":"PAYMENT_SUCCESS_WEBHOOK","data":{"settlement":{"settlement_id":1,'
            b'"vendor_id":"v","status":"SUCCESS","settlement_amount":1.00}}}',
            "webhook_unexpected",
        ),
    ):
        signed = {
            "x-webhook-timestamp": stamp,
            "x-webhook-signature": sign(CLIENT_SECRET, stamp, junk),
        }
        with pytest.raises(Refused) as err:
            read_vendor_settlement_webhook(junk, signed, [CLIENT_SECRET])
        assert err.value.code == code


async def test_settlement_reports_page_through_and_add_up(
    cf: CashfreeClient, control: httpx.AsyncClient
) -> None:
    first = await _paid_order(cf, control, 10_000, [])
    one = (await control.post("/_sandbox/settlements/run")).json()
    second = await _paid_order(cf, control, 25_050, [])
    await cf.create_refund(order_id=second, refund_id="r_1", amount_paise=5_000)
    await _refunded(cf, second, "r_1")
    two = (await control.post("/_sandbox/settlements/run")).json()
    ids = [one["cf_settlement_id"], two["cf_settlement_id"]]

    listed = [s async for s in cf.fetch_settlements(limit=1, settlement_ids=ids)]
    assert [s.cf_settlement_id for s in listed] == [str(i) for i in ids]
    settlement = listed[1]
    rows = [r async for r in cf.settlement_recon(limit=1, settlement_ids=[ids[1]])]
    assert sorted(r.event_details.event_type for r in rows) == ["PAYMENT", "REFUND"]
    assert sum(r.signed_settlement_paise for r in rows) == settlement.settlement_amount_paise
    assert settlement.settlement_amount_paise == 25_050 - 5_000 - 438 - 78
    assert all(r.settlement_details and r.settlement_details.utr == settlement.utr for r in rows)
    assert all(r.payment_details and r.payment_details.payment_group == "upi" for r in rows)
    by_utr = [s async for s in cf.fetch_settlements(utrs=[settlement.utr or ""])]
    assert [s.cf_settlement_id for s in by_utr] == [settlement.cf_settlement_id]

    now = datetime.now(UTC)
    window = {"start": now - timedelta(days=1), "end": now + timedelta(days=3)}
    events = [r async for r in cf.recon(limit=1, **window)]
    assert {r.order_details.order_id for r in events if r.order_details} >= {first, second}
    per_order = await cf.order_settlement(first)
    assert per_order.cf_settlement_id == str(ids[0])
    assert per_order.settlement_amount_paise == 10_000 - 175 - 31
    with pytest.raises(CashfreeRejected) as err:
        await cf.recon_page(start=now, end=now - timedelta(days=1))
    assert err.value.code == "filters_invalid"


DOCS_VENDOR = b"""{
  "email": "johndoe@cashfree.com", "status": "IN_BENE_CREATION",
  "bank": {"account_number": 26291800001191, "account_holder": "JOHN DOE", "ifsc": "YESB0000262"},
  "upi": null, "phone": 9876543210, "name": "customer", "vendor_id": "TestAccount11",
  "schedule_option": {"settlement_schedule_message": "T+1 settlement at 11:00 AM",
                      "schedule_id": 1, "merchant_default": false},
  "kyc_details": {"account_type": "BUSINESS", "business_type": "NBFC", "pan": "AFDHK1234F"},
  "dashboard_access": false, "bank_details": null
}"""

SAMPLE_SETTLEMENT_HOOK = b"""{"data": {"settlement": {"settlement_id": 49703, "status": "CREATED",
   "utr": "1686217237243457", "payment_amount": null,
   "settlement_initiated_on": "2023-06-08T15:10:35+05:30", "settlement_type": null,
   "settled_on": "null", "reason": null, "adjustment": 100.00, "settlement_amount": 600.00,
   "service_charge": 0.50, "service_tax": 0.09, "amount_settled": null,
   "payment_from": "2023-06-08", "payment_till": "2023-06-08",
   "vendor_id": "esSettlementsAutomationVendor", "vendor_transaction_amount": 500.00,
   "account_mode": "BANK", "settled_orders_count": 1, "account_number": "XXXXXXX1234",
   "ifsc": "HDFC0000001", "vpa": null}},
 "event_time": "2023-06-08T15:10:37+05:30", "type": "VENDOR_SETTLEMENT_CREATED"}"""


def test_models_read_the_docs_samples_and_the_sdk_shapes() -> None:
    docs = Vendor.model_validate(json.loads(DOCS_VENDOR, parse_float=Decimal))
    assert docs.bank is not None and docs.bank.account_number == "26291800001191"
    assert docs.phone == "9876543210" and docs.schedule_option is not None
    assert "26291800001191" not in repr(docs) and "AFDHK1234F" not in repr(docs)
    sdk = Vendor.model_validate(
        {
            "vendor_id": "v1",
            "status": "active",
            "bank": [{"account_number": "026291800001191", "ifsc": "YESB0000262"}],
            "schedule_option": [{"schedule_id": 8}],
            "upi": [],
            "kyc_details": [{"pan": "AFDHK1234F"}],
            "some_new_field": {"x": 1},
        }
    )
    assert sdk.active and sdk.bank is not None and sdk.bank.masked == "XXXX1191"
    assert sdk.upi is None and sdk.schedule_option and sdk.schedule_option.schedule_id == 8
    hook = VendorSettlementWebhook.model_validate(
        json.loads(SAMPLE_SETTLEMENT_HOOK, parse_float=Decimal)
    )
    s = hook.settlement
    assert (s.settlement_id, s.settled_on, s.settlement_amount_paise) == ("49703", None, 60_000)
    assert (s.vendor_transaction_amount_paise, s.adjustment_paise) == (50_000, 10_000)
    assert hook.event == VendorSettlementEvent.CREATED
    initiated = VendorSettlementWebhook.model_validate(
        json.loads(SAMPLE_SETTLEMENT_HOOK.replace(b"_CREATED", b"_INITIATED"), parse_float=Decimal)
    )
    assert initiated.event == VendorSettlementEvent.CREATED


def test_split_echoes_never_make_a_refund_or_order_unreadable() -> None:
    base = {"refund_id": "r_1", "refund_amount": "1.00", "refund_status": "SUCCESS"}
    odd: list[Any] = [
        "null",
        {"vendor_id": "v"},
        ["x", {"merchantVendorId": None, "amount": "x", "percentage": "abc", "tags": [1]}],
    ]
    for splits in odd:
        assert Refund.model_validate(base | {"refund_splits": splits}).refund_id == "r_1"
    read = Refund.model_validate(
        base | {"refund_splits": [{"merchantVendorId": "v2", "amount": 1, "percentage": None}]}
    )
    assert read.refund_splits is not None
    assert [(s.vendor_id, s.amount_paise) for s in read.refund_splits] == [("v2", 100)]
    order = Order.model_validate(
        {
            "order_id": "o_1",
            "order_amount": 10,
            "order_currency": "INR",
            "order_status": "ACTIVE",
            "order_splits": [{"vendor_id": 7, "percentage": "12.5"}],
        }
    )
    assert order.order_splits is not None
    assert (order.order_splits[0].vendor_id, order.order_splits[0].percentage) == (
        "7",
        Decimal("12.5"),
    )
