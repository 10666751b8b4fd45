"""Merchant settlement reports (cashfree.md §7): settlements formed on the sandbox clock or
on demand, figures that add up to the sandbox's own payments minus refunds minus charges,
cursor pagination, the filters, and refusals of bad bodies."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import httpx
import pytest

from tests.gateway.sandbox.conftest import AUTH
from tests.gateway.sandbox.helpers import pay, upi_collect
from tests.gateway.sandbox.split_helpers import (
    SPLIT_CONFIG,
    active_vendor,
    paid_split_order,
    refund_and_wait,
    split_order,
    vendor_unsettled,
)
from tests.gateway.sandbox.strict_models import ErrorBody, parse


@pytest.fixture
async def fresh(start_sandbox: Callable[..., str]) -> AsyncIterator[httpx.AsyncClient]:
    """A sandbox of this test's own: its settlements hold only this test's payments."""
    url = start_sandbox(**SPLIT_CONFIG)
    async with httpx.AsyncClient(base_url=url, headers=AUTH, timeout=10) as client:
        yield client


ROW_SECTIONS = {
    "event_details",
    "order_details",
    "customer_details",
    "payment_details",
    "settlement_details",
    "dispute_details",
    "refund_details",
}
EVENT_FIELDS = {
    "event_id",
    "event_type",
    "event_settlement_amount",
    "event_amount",
    "sale_type",
    "event_status",
    "entity",
    "event_time",
    "event_currency",
    "event_service_charge",
    "event_service_tax",
    "event_remarks",
}


def _charges(paise: int) -> tuple[int, int]:
    charge = paise * 175 // 10_000
    return charge, charge * 18 // 100


def _paise(value: Any) -> int:
    return int(Decimal(str(value)) * 100)


async def _pages(api: httpx.AsyncClient, path: str, body: dict[str, Any]) -> list[list[Any]]:
    pages: list[list[Any]] = []
    cursor = None
    while True:
        response = await api.post(path, json=body | {"pagination": {"limit": 2, "cursor": cursor}})
        assert response.status_code == 200, response.text
        page = response.json()
        assert page["limit"] == 2
        pages.append(page["data"])
        cursor = page["cursor"]
        if cursor is None:
            return pages


async def test_a_settlement_adds_up_to_payments_minus_refunds_minus_charges(
    fresh: httpx.AsyncClient,
) -> None:
    amounts = ["100.00", "250.50", "999.99"]
    orders = [await paid_split_order(fresh, float(a), []) for a in amounts]
    await refund_and_wait(fresh, orders[1].order_id, 50)
    ran = await fresh.post("/_sandbox/settlements/run")
    assert ran.status_code == 200, ran.text
    settlement = ran.json()
    paid = sum(_paise(a) for a in amounts)
    charge = sum(_charges(_paise(a))[0] for a in amounts)
    tax = sum(_charges(_paise(a))[1] for a in amounts)
    assert (charge, tax) == (2362, 423)
    assert _paise(settlement["payment_amount"]) == paid
    assert _paise(settlement["service_charge"]) == charge
    assert _paise(settlement["service_tax"]) == tax
    assert _paise(settlement["adjustment"]) == -5000
    assert _paise(settlement["settlement_amount"]) == paid - 5000 - charge - tax == 127264
    sid = settlement["cf_settlement_id"]

    listed = await fresh.post(
        "/pg/settlements",
        json={"pagination": {"limit": 10}, "filters": {"cf_settlement_ids": [str(sid)]}},
    )
    assert [s["utr"] for s in listed.json()["data"]] == [settlement["utr"]]

    # Recon rows of the settlement, two a page: 3 PAYMENT credits and 1 REFUND debit.
    pages = await _pages(fresh, "/pg/settlement/recon", {"filters": {"cf_settlement_ids": [sid]}})
    assert [len(p) for p in pages] == [2, 2]
    rows = [r for p in pages for r in p]
    kinds = sorted(
        (r["event_details"]["event_type"], r["event_details"]["sale_type"]) for r in rows
    )
    assert kinds == [("PAYMENT", "CREDIT")] * 3 + [("REFUND", "DEBIT")]
    net = sum(
        _paise(r["event_details"]["event_settlement_amount"])
        * (1 if r["event_details"]["sale_type"] == "CREDIT" else -1)
        for r in rows
    )
    assert net == _paise(settlement["settlement_amount"])
    assert all(r["settlement_details"]["utr"] == settlement["utr"] for r in rows)
    assert all("payment_mode" in r["payment_details"] for r in rows)
    # The §7 row: its sections and the event's fields, as the doc lists them.
    assert all(set(r) == ROW_SECTIONS for r in rows)
    assert all(set(r["event_details"]) == EVENT_FIELDS for r in rows)
    refund_row = next(r for r in rows if r["event_details"]["event_type"] == "REFUND")
    assert refund_row["refund_details"]["refund_id"].startswith("rf_")
    assert refund_row["order_details"]["order_id"] == orders[1].order_id

    per_order = await fresh.get(f"/pg/orders/{orders[2].order_id}/settlements")
    entity = per_order.json()
    assert (entity["cf_settlement_id"], entity["transfer_utr"]) == (str(sid), settlement["utr"])
    assert _paise(entity["settlement_amount"]) == 99999 - 1749 - 314


async def test_settlements_form_on_the_clock_and_the_reports_filter(
    fresh: httpx.AsyncClient,
) -> None:
    first = await paid_split_order(fresh, 100, [])
    await fresh.post("/_sandbox/clock", json={"advance_seconds": 86_400})
    second = await paid_split_order(fresh, 200, [])
    await fresh.post("/_sandbox/clock", json={"advance_seconds": 86_400})
    listed = await _pages(fresh, "/pg/settlements", {})
    rows = [r for p in listed for r in p]
    assert [_paise(r["payment_amount"]) for r in rows] == [10000, 20000]
    assert rows[0]["cf_settlement_id"] < rows[1]["cf_settlement_id"]
    by_utr = await fresh.post(
        "/pg/settlements",
        json={"pagination": {"limit": 5}, "filters": {"settlement_utrs": [rows[1]["utr"]]}},
    )
    assert [r["cf_settlement_id"] for r in by_utr.json()["data"]] == [rows[1]["cf_settlement_id"]]
    nothing = await fresh.post(
        "/pg/settlements",
        json={"pagination": {"limit": 5}, "filters": {"settlement_status": ["FAILED"]}},
    )
    assert nothing.json() == {"cursor": None, "limit": 5, "data": []}
    # /recon: every event in the window, settled or not.
    third = await paid_split_order(fresh, 300, [])
    recon = await fresh.post(
        "/pg/recon",
        json={
            "pagination": {"limit": 10},
            "filters": {"start_date": "2000-01-01T00:00:00Z", "end_date": "2099-01-01T00:00:00Z"},
        },
    )
    got = {r["order_details"]["order_id"]: r for r in recon.json()["data"]}
    assert set(got) == {first.order_id, second.order_id, third.order_id}
    assert got[third.order_id]["settlement_details"] is None
    assert got[first.order_id]["settlement_details"]["utr"] == rows[0]["utr"]
    assert "payment_group" in got[first.order_id]["payment_details"]


async def test_a_split_settlement_keeps_the_vendors_part_out(fresh: httpx.AsyncClient) -> None:
    vendor_id = await active_vendor(fresh)
    order = await paid_split_order(fresh, 100, [{"vendor_id": vendor_id, "amount": 60}])
    await refund_and_wait(fresh, order.order_id, 50)  # the vendor gives back 30
    settlement = (await fresh.post("/_sandbox/settlements/run")).json()
    # 100 - 50 refunded - 1.75 - 0.31 - (60 - 30) for the vendor
    assert _paise(settlement["settlement_amount"]) == 10000 - 5000 - 175 - 31 - 3000
    sid = settlement["cf_settlement_id"]
    body = {"pagination": {"limit": 10}, "filters": {"cf_settlement_ids": [sid]}}
    rows = (await fresh.post("/pg/settlement/recon", json=body)).json()["data"]
    net = sum(
        (
            _paise(r["event_details"]["event_settlement_amount"])
            - _paise(r["settlement_details"]["vendor_commission"])
        )
        * (1 if r["event_details"]["sale_type"] == "CREDIT" else -1)
        for r in rows
    )
    assert net == _paise(settlement["settlement_amount"])
    recon = (await fresh.get(f"/pg/easy-split/orders/{order.order_id}")).json()
    assert recon["settlement"]["cf_settlement_id"] == str(sid)


async def test_a_refund_bigger_than_the_settlement_waits(fresh: httpx.AsyncClient) -> None:
    order = await paid_split_order(fresh, 100, [])
    await fresh.post("/_sandbox/settlements/run")
    await refund_and_wait(fresh, order.order_id, 100)
    assert (await fresh.post("/_sandbox/settlements/run")).json() == {"settlement": None}
    await paid_split_order(fresh, 300, [])
    settlement = (await fresh.post("/_sandbox/settlements/run")).json()
    assert _paise(settlement["settlement_amount"]) == 30000 - 10000 - 525 - 94


@pytest.mark.parametrize(
    ("path", "body", "code"),
    [
        ("/pg/settlements", {}, "pagination_missing"),
        ("/pg/settlements", {"pagination": {"limit": 0}}, "limit_invalid"),
        ("/pg/settlements", {"pagination": {"limit": 1001}}, "limit_invalid"),
        ("/pg/settlements", {"pagination": {"limit": "10"}}, "limit_invalid"),
        ("/pg/settlements", {"pagination": {"limit": 5, "cursor": "bogus"}}, "cursor_invalid"),
        ("/pg/settlements", {"pagination": {"limit": 5}, "filters": []}, "filters_invalid"),
        (
            "/pg/settlements",
            {"pagination": {"limit": 5}, "filters": {"start_date": "yesterday"}},
            "start_date_invalid",
        ),
        (
            "/pg/settlements",
            {"pagination": {"limit": 5}, "filters": {"cf_settlement_ids": ["x1"]}},
            "cf_settlement_ids_invalid",
        ),
        ("/pg/recon", {"pagination": {"limit": 5}}, "filters_invalid"),
        (
            "/pg/recon",
            {
                "pagination": {"limit": 5},
                "filters": {
                    "start_date": "2026-02-01T00:00:00Z",
                    "end_date": "2026-01-01T00:00:00Z",
                },
            },
            "filters_invalid",
        ),
        ("/pg/settlement/recon", {"pagination": {"limit": 5}}, "filters_missing"),
    ],
)
async def test_report_bodies_are_checked(
    fresh: httpx.AsyncClient, path: str, body: dict[str, Any], code: str
) -> None:
    response = await fresh.post(path, json=body)
    assert response.status_code == 400, response.text
    assert parse(ErrorBody, response.content).code == code


async def test_order_settlement_of_an_unpaid_or_unknown_order(fresh: httpx.AsyncClient) -> None:
    order = await split_order(fresh, 100, [])
    assert (await fresh.get(f"/pg/orders/{order.order_id}/settlements")).status_code == 404
    assert (await fresh.get("/pg/orders/nobody_1/settlements")).status_code == 404
    await paid_split_order(fresh, 100, [])


async def test_two_captured_payments_of_one_order_are_both_settled(
    fresh: httpx.AsyncClient,
) -> None:
    vendor_id = await active_vendor(fresh)
    order = await split_order(fresh, 100, [{"vendor_id": vendor_id, "amount": 40}])
    ids = []
    for _ in range(2):  # two attempts left pending, then both succeed
        started = await pay(fresh, order.payment_session_id, upi_collect("someone@okbank"))
        ids.append(started.json()["cf_payment_id"])
    for cf_payment_id in ids:
        simulated = await fresh.post(
            "/pg/simulate",
            json={
                "entity": "PAYMENTS",
                "entity_id": cf_payment_id,
                "entity_simulation": {"payment_status": "SUCCESS"},
            },
        )
        assert simulated.status_code == 200, simulated.text
    assert await vendor_unsettled(fresh, vendor_id) == b"40.00"  # the share comes once
    settlement = (await fresh.post("/_sandbox/settlements/run")).json()
    assert _paise(settlement["payment_amount"]) == 20_000
    assert _paise(settlement["settlement_amount"]) == 20_000 - 2 * (175 + 31) - 4_000
    body = {
        "pagination": {"limit": 10},
        "filters": {"cf_settlement_ids": [settlement["cf_settlement_id"]]},
    }
    rows = (await fresh.post("/pg/settlement/recon", json=body)).json()["data"]
    assert sorted(r["payment_details"]["cf_payment_id"] for r in rows) == sorted(ids)
