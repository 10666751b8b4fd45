"""Easy Split in the sandbox: vendors (validation, KYC, updates), order_splits checks, the
vendors' shares credited to the paisa, refunds debiting them, split recon (cashfree.md §6.1,
§14)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.gateway.sandbox.conftest import unique
from tests.gateway.sandbox.split_helpers import (
    active_vendor,
    paid_split_order,
    pay_now,
    refund_and_wait,
    sapi,
    split_order,
    split_url,
    vendor_body,
    vendor_unsettled,
)
from tests.gateway.sandbox.strict_models import ErrorBody, parse

__all__ = ["sapi", "split_url"]

BOTH = "Invalid Request: Both Amount and percentage are present"
TOO_MUCH = "Total split amount can not be greater than transaction amount / eligible split balance"


def _error(response: httpx.Response, status: int) -> ErrorBody:
    assert response.status_code == status, response.text
    return parse(ErrorBody, response.content)


async def test_a_new_vendor_is_in_bene_creation_then_active_on_the_clock(
    sapi: httpx.AsyncClient,
) -> None:
    body = vendor_body()
    created = await sapi.post("/pg/easy-split/vendors", json=body)
    assert created.status_code == 200, created.text
    docs = created.json()
    # The docs' shape: objects for bank, schedule_option and kyc_details.
    assert docs["status"] == "IN_BENE_CREATION"
    assert docs["bank"] == body["bank"]
    assert docs["schedule_option"]["schedule_id"] == 1
    assert docs["kyc_details"]["pan"] == "ABCPV1234D"
    fetched = (await sapi.get(f"/pg/easy-split/vendors/{body['vendor_id']}")).json()
    # The SDK's VendorEntity: lists for bank and schedule_option.
    assert fetched["bank"] == [body["bank"]] and isinstance(fetched["schedule_option"], list)
    assert fetched["status"] == "IN_BENE_CREATION"
    moved = await sapi.post("/_sandbox/clock", json={"advance_seconds": 3600})
    assert moved.status_code == 200
    fetched = (await sapi.get(f"/pg/easy-split/vendors/{body['vendor_id']}")).json()
    assert fetched["status"] == "ACTIVE"


async def test_a_vendor_asked_blocked_ends_kyc_blocked(sapi: httpx.AsyncClient) -> None:
    body = vendor_body(status="BLOCKED")
    assert (await sapi.post("/pg/easy-split/vendors", json=body)).status_code == 200
    await sapi.post("/_sandbox/clock", json={"advance_seconds": 3600})
    fetched = (await sapi.get(f"/pg/easy-split/vendors/{body['vendor_id']}")).json()
    assert fetched["status"] == "BLOCKED"


async def test_an_invalid_test_bank_account_ends_kyc_blocked(sapi: httpx.AsyncClient) -> None:
    bank = {"account_number": "026291800001190", "account_holder": "Club", "ifsc": "YESB0000262"}
    body = vendor_body(bank=bank)
    assert (await sapi.post("/pg/easy-split/vendors", json=body)).status_code == 200
    await sapi.post("/_sandbox/clock", json={"advance_seconds": 3600})
    fetched = (await sapi.get(f"/pg/easy-split/vendors/{body['vendor_id']}")).json()
    assert fetched["status"] == "BLOCKED"
    assert fetched["remarks"] == "Bank account verification failed: INVALID_BANK_ACCOUNT"


async def test_duplicate_vendor_id_is_a_conflict(sapi: httpx.AsyncClient) -> None:
    body = vendor_body()
    assert (await sapi.post("/pg/easy-split/vendors", json=body)).status_code == 200
    error = _error(await sapi.post("/pg/easy-split/vendors", json=body), 409)
    assert error.code == "vendor_already_exists" and error.type == "invalid_request_error"


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"vendor_id": None}, "vendor_id_missing"),
        ({"vendor_id": "bad-id!"}, "vendor_id_invalid"),
        ({"status": "PENDING"}, "status_invalid"),
        ({"status": None}, "status_missing"),
        ({"name": "Acme! Ltd"}, "name_invalid"),
        ({"name": None}, "name_missing"),
        ({"email": "not-an-email"}, "email_invalid"),
        ({"phone": "1234567"}, "phone_invalid"),
        ({"phone": "+911234567890123"}, "phone_invalid"),
        ({"phone": None}, "phone_missing"),
        (
            {"bank": {"account_number": "12", "account_holder": "A", "ifsc": "YESB0000262"}},
            "account_number_invalid",
        ),
        (
            {"bank": {"account_number": "026291800001191", "account_holder": "A", "ifsc": "YES1"}},
            "ifsc_invalid",
        ),
        ({"bank": None}, "bank_missing"),
        ({"bank": None, "upi": {"vpa": "no-at-sign", "account_holder": "A"}}, "vpa_invalid"),
        ({"kyc_details": None}, "kyc_details_missing"),
        ({"kyc_details": {"account_type": "BUSINESS"}}, "business_type_missing"),
        ({"kyc_details": {"account_type": "B", "business_type": "E", "pan": "123"}}, "pan_invalid"),
        ({"verify_account": "yes"}, "verify_account_invalid"),
        ({"schedule_option": "daily"}, "schedule_option_invalid"),
    ],
)
async def test_create_vendor_refuses_bad_input_and_stores_nothing(
    sapi: httpx.AsyncClient, change: dict[str, Any], code: str
) -> None:
    vendor_id = unique("v")
    body = vendor_body(vendor_id) | change
    body = {k: v for k, v in body.items() if v is not None}
    error = _error(await sapi.post("/pg/easy-split/vendors", json=body), 400)
    assert error.code == code, error
    assert (await sapi.get(f"/pg/easy-split/vendors/{vendor_id}")).status_code == 404


async def test_vendor_routes_refuse_bodies_that_are_not_objects(sapi: httpx.AsyncClient) -> None:
    for body in (b"[]", b"12", b"not json"):
        created = await sapi.post("/pg/easy-split/vendors", content=body)
        assert _error(created, 400).code == "request_invalid"
    vendor_id = await active_vendor(sapi)
    patched = await sapi.patch(f"/pg/easy-split/vendors/{vendor_id}", content=b'"x"')
    assert _error(patched, 400).code == "request_invalid"


async def test_vendor_with_upi_and_phone_with_country_code(sapi: httpx.AsyncClient) -> None:
    body = vendor_body(
        bank=None, upi={"vpa": "club@upi", "account_holder": "Chess Club"}, phone="+919876543210"
    )
    created = await sapi.post("/pg/easy-split/vendors", json=body)
    assert created.status_code == 200, created.text
    assert created.json()["upi"] == {"vpa": "club@upi", "account_holder": "Chess Club"}
    assert created.json()["bank"] is None


async def test_kyc_rejection_and_block_from_the_control_api(sapi: httpx.AsyncClient) -> None:
    vendor_id = await active_vendor(sapi)
    rejected = await sapi.post(
        f"/_sandbox/easy-split/vendors/{vendor_id}", json={"action": "reject_kyc"}
    )
    assert rejected.json()["status"] == "BLOCKED"
    assert rejected.json()["remarks"] == "KYC documents rejected"
    error = _error(
        await sapi.post(f"/_sandbox/easy-split/vendors/{vendor_id}", json={"action": "nope"}), 400
    )
    assert error.code == "request_invalid"
    missing = await sapi.post("/_sandbox/easy-split/vendors/nobody", json={"action": "block"})
    assert missing.status_code == 404


async def test_patch_vendor_status_details_and_new_bank(sapi: httpx.AsyncClient) -> None:
    vendor_id = await active_vendor(sapi)
    path = f"/pg/easy-split/vendors/{vendor_id}"
    blocked = await sapi.patch(path, json={"status": "BLOCKED", "name": "New Name"})
    assert blocked.status_code == 200, blocked.text
    assert (blocked.json()["status"], blocked.json()["name"]) == ("BLOCKED", "New Name")
    assert (await sapi.patch(path, json={"status": "ACTIVE"})).json()["status"] == "ACTIVE"
    bank = {"account_number": "00224412311300", "account_holder": "Club", "ifsc": "YESB0000001"}
    moved = (await sapi.patch(path, json={"bank": bank})).json()
    assert moved["status"] == "IN_BENE_CREATION" and moved["bank"] == bank
    assert _error(await sapi.patch(path, json={"status": "GONE"}), 400).code == "status_invalid"
    await sapi.post("/_sandbox/clock", json={"advance_seconds": 3600})
    assert (await sapi.get(path)).json()["status"] == "ACTIVE"
    assert (await sapi.patch(path, json={"status": "DELETED"})).json()["status"] == "DELETED"
    assert _error(await sapi.patch(path, json={"name": "Again"}), 400).code == "vendor_deleted"
    assert (await sapi.patch("/pg/easy-split/vendors/nobody", json={})).status_code == 404


async def test_order_split_refusals_use_cashfree_texts(sapi: httpx.AsyncClient) -> None:
    v1 = await active_vendor(sapi)
    v2 = await active_vendor(sapi)
    pending = vendor_body()
    await sapi.post("/pg/easy-split/vendors", json=pending)
    cases: list[tuple[list[dict[str, Any]], str]] = [
        ([{"vendor_id": v1, "amount": 10, "percentage": 10}], BOTH),
        ([{"vendor_id": "nobody_here", "amount": 10}], "vendor does not exist"),
        (
            [{"vendor_id": pending["vendor_id"], "amount": 10}],
            "vendor is not active: IN_BENE_CREATION",
        ),
        ([{"vendor_id": v1, "amount": 60}, {"vendor_id": v2, "amount": 40.01}], TOO_MUCH),
        (
            [{"vendor_id": v1, "percentage": 60}, {"vendor_id": v2, "percentage": 40.5}],
            "Invalid vendor split percentage",
        ),
        ([{"vendor_id": v1, "percentage": 10.125}], "Invalid vendor split percentage"),
        ([{"vendor_id": v1, "percentage": 0}], "Invalid vendor split percentage"),
        ([{"vendor_id": v1, "amount": 1.001}], "Invalid vendor split amount"),
        ([{"vendor_id": v1}], "Invalid Request: amount or percentage is required"),
        (
            [{"vendor_id": v1, "amount": 1}, {"vendor_id": v1, "amount": 1}],
            "Invalid Request: a vendor_id appears more than once",
        ),
    ]
    for splits, message in cases:
        order_id = unique("order")
        response = await sapi.post(
            "/pg/orders",
            json={
                "order_id": order_id,
                "order_amount": 100,
                "order_currency": "INR",
                "customer_details": {"customer_id": "c_1", "customer_phone": "9999999999"},
                "order_splits": splits,
            },
        )
        error = _error(response, 400)
        assert (error.code, error.message) == ("api_request_failed", message), splits
        assert (await sapi.get(f"/pg/orders/{order_id}")).status_code == 404


async def test_splits_echoed_and_shares_credited_to_the_paisa(sapi: httpx.AsyncClient) -> None:
    v1 = await active_vendor(sapi)
    v2 = await active_vendor(sapi)
    splits = [{"vendor_id": v1, "percentage": 33.33}, {"vendor_id": v2, "amount": 100}]
    order = await split_order(sapi, 333.33, splits)
    raw = (await sapi.get(f"/pg/orders/{order.order_id}")).content
    assert (
        b'"order_splits":[{"vendor_id":"' + v1.encode() + b'","amount":null,"percentage":33.33,'
        b'"tags":null},{"vendor_id":"' + v2.encode() + b'","amount":100.00,"percentage":null,'
        b'"tags":null}]'
    ) in raw
    # Nothing until it is paid.
    assert await vendor_unsettled(sapi, v1) == b"0.00"
    await paid_split_order(sapi, 10, [{"vendor_id": v1, "amount": 10}])  # another order
    await pay_now(sapi, order)
    # 33.33% of 333.33 = 111.098889, rounded down to the paisa; the rest is the merchant's.
    assert await vendor_unsettled(sapi, v1) == b"121.09"
    assert await vendor_unsettled(sapi, v2) == b"100.00"


async def test_refund_debits_vendors_in_proportion(sapi: httpx.AsyncClient) -> None:
    v1 = await active_vendor(sapi)
    v2 = await active_vendor(sapi)
    order = await paid_split_order(
        sapi, 100, [{"vendor_id": v1, "amount": 60}, {"vendor_id": v2, "amount": 40}]
    )
    refund = await refund_and_wait(sapi, order.order_id, 50)
    assert refund["refund_splits"] == []  # not asked for: not echoed
    assert (await vendor_unsettled(sapi, v1), await vendor_unsettled(sapi, v2)) == (
        b"30.00",
        b"20.00",
    )


async def test_proportional_rounding_takes_back_exactly_the_share(sapi: httpx.AsyncClient) -> None:
    v1 = await active_vendor(sapi)
    order = await paid_split_order(sapi, 100, [{"vendor_id": v1, "percentage": 33.33}])
    assert await vendor_unsettled(sapi, v1) == b"33.33"
    await refund_and_wait(sapi, order.order_id, 0.10)  # 3.333 paise: 3 taken
    assert await vendor_unsettled(sapi, v1) == b"33.30"
    await refund_and_wait(sapi, order.order_id, 99.90)
    assert await vendor_unsettled(sapi, v1) == b"0.00"


async def test_explicit_refund_splits_are_checked_honoured_and_echoed(
    sapi: httpx.AsyncClient,
) -> None:
    v1 = await active_vendor(sapi)
    v2 = await active_vendor(sapi)
    order = await paid_split_order(
        sapi, 100, [{"vendor_id": v1, "amount": 60}, {"vendor_id": v2, "amount": 40}]
    )
    path = f"/pg/orders/{order.order_id}/refunds"
    bad: list[tuple[Any, str]] = [
        ([{"vendor_id": "stranger", "amount": 1}], "is not in this order's split"),
        ([{"vendor_id": v1, "amount": 60.01}], "share not yet refunded"),
        (
            [{"vendor_id": v1, "amount": 50}, {"vendor_id": v2, "amount": 31}],
            "more than the refund",
        ),
        ([{"vendor_id": v1}], "refund_splits[0].amount"),
        ([{"vendor_id": v1, "amount": 1}, {"vendor_id": v1, "amount": 1}], "appears twice"),
        ("all", "should be a non-empty list"),
    ]
    for splits, text in bad:
        body = {"refund_id": unique("rf"), "refund_amount": 80, "refund_splits": splits}
        error = _error(await sapi.post(path, json=body), 400)
        assert text in error.message, (splits, error)
    assert (await sapi.get(path)).json() == []  # nothing stored
    refund = await refund_and_wait(
        sapi, order.order_id, 10, refund_splits=[{"vendor_id": v2, "amount": 10}]
    )
    assert refund["refund_splits"] == [
        {"vendor_id": v2, "amount": 10.0, "percentage": None, "tags": None}
    ]
    assert (await vendor_unsettled(sapi, v1), await vendor_unsettled(sapi, v2)) == (
        b"60.00",
        b"30.00",
    )


async def test_split_recon_of_an_order(sapi: httpx.AsyncClient) -> None:
    v1 = await active_vendor(sapi)
    order = await paid_split_order(sapi, 200, [{"vendor_id": v1, "percentage": 25}])
    refund = await refund_and_wait(
        sapi, order.order_id, 20, refund_splits=[{"vendor_id": v1, "amount": 5}]
    )
    recon = await sapi.get(f"/pg/easy-split/orders/{order.order_id}")
    assert recon.status_code == 200, recon.text
    body = recon.json()
    assert body["settlement"] is None  # not settled yet
    assert body["vendors"] == [
        {
            "vendor_id": v1,
            "settlement_id": None,
            "settlement_amount": 45.0,
            "settlement_eligibility_date": body["vendors"][0]["settlement_eligibility_date"],
        }
    ]
    assert body["refunds"][0]["refund_id"] == refund["refund_id"]
    assert body["refunds"][0]["refund_splits"] == [{"vendor_id": v1, "amount": 5.0}]
    assert (await sapi.get("/pg/easy-split/orders/nope_404")).status_code == 404
