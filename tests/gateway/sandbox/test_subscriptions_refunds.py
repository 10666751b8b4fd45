"""Refunds of charges debited on a mandate in the sandbox (cashfree.md §12.1, §12.5, §12.9):
validation as Cashfree answers it, at most what the charge debited less its earlier refunds,
idempotent by `refund_id`, the outcome forced by `refund_note`, PENDING then settled
`refund_delay_s` later with `SUBSCRIPTION_REFUND_STATUS`, and UPI refunds STANDARD only."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from tests.gateway.sandbox.servers import Receiver
from tests.gateway.sandbox.subs_helpers import (
    active_subscription,
    advance,
    advance_to_hour,
    charge,
    subs,
    subs_url,
    types,
    wait_events,
)

__all__ = ["subs", "subs_url"]  # fixtures

DAY = 86_400


@pytest.fixture(autouse=True)
async def morning(subs: httpx.AsyncClient) -> None:
    await advance_to_hour(subs, 9)


async def _debited(api: httpx.AsyncClient, method: str = "upi") -> tuple[str, dict[str, Any]]:
    """An ACTIVE mandate and a charge of 500.00 on it, debited (the clock moved past it)."""
    sub = await active_subscription(api, method)
    raised = await charge(api, sub["subscription_id"], amount=500)
    await advance(api, 2 * DAY)
    return sub["subscription_id"], raised


async def _refund(
    api: httpx.AsyncClient, sub_id: str, status: int = 200, **body: Any
) -> dict[str, Any]:
    answer = await api.post(f"/pg/subscriptions/{sub_id}/refunds", json=body)
    assert answer.status_code == status, answer.text
    return dict(answer.json())


async def _settled(api: httpx.AsyncClient, sub_id: str, refund_id: str) -> dict[str, Any]:
    """The refund once it left PENDING (the sandbox settles it on its clock)."""
    deadline = time.monotonic() + 5
    while True:
        answer = await api.get(f"/pg/subscriptions/{sub_id}/refunds/{refund_id}")
        assert answer.status_code == 200, answer.text
        if answer.json()["refund_status"] != "PENDING":
            return dict(answer.json())
        assert time.monotonic() < deadline, answer.text
        await asyncio.sleep(0.05)


async def test_refund_pending_then_success_with_its_webhook(
    subs: httpx.AsyncClient, receiver: Receiver
) -> None:
    sub_id, paid = await _debited(subs)
    made = await _refund(
        subs, sub_id, payment_id=paid["payment_id"], refund_id="rf_one", refund_amount=200.5
    )
    assert made == {
        "payment_id": paid["payment_id"],
        "cf_payment_id": paid["cf_payment_id"],
        "refund_id": "rf_one",
        "cf_refund_id": made["cf_refund_id"],
        "refund_amount": 200.5,
        "refund_note": None,
        "refund_speed": "STANDARD",
        "refund_status": "PENDING",
    }
    done = await _settled(subs, sub_id, "rf_one")
    assert done["refund_status"] == "SUCCESS"
    hooks = await wait_events(receiver, str(subs.hook), sub_id, 5)  # type: ignore[attr-defined]
    assert types(hooks)[-1] == "SUBSCRIPTION_REFUND_STATUS"
    data = hooks[-1][1]
    assert (data["refund_id"], data["refund_status"], data["refund_amount"]) == (
        "rf_one",
        "SUCCESS",
        200.5,
    )
    assert data["payment_id"] == paid["payment_id"]


async def test_note_forces_failed_or_pending(subs: httpx.AsyncClient) -> None:
    sub_id, paid = await _debited(subs)
    pid = paid["payment_id"]
    await _refund(
        subs, sub_id, payment_id=pid, refund_id="rf_f", refund_amount=100, refund_note="FAILED"
    )
    await _refund(
        subs, sub_id, payment_id=pid, refund_id="rf_p", refund_amount=100, refund_note="PENDING"
    )
    assert (await _settled(subs, sub_id, "rf_f"))["refund_status"] == "FAILED"
    await advance(subs, DAY)
    still = await subs.get(f"/pg/subscriptions/{sub_id}/refunds/rf_p")
    assert still.json()["refund_status"] == "PENDING"


async def test_at_most_what_was_debited_less_earlier_refunds(subs: httpx.AsyncClient) -> None:
    sub_id, paid = await _debited(subs)
    pid = paid["payment_id"]
    await _refund(subs, sub_id, payment_id=pid, refund_id="rf_a", refund_amount=300)
    # A failed refund gives its amount back to what can be refunded.
    await _refund(
        subs, sub_id, payment_id=pid, refund_id="rf_x", refund_amount=200, refund_note="FAILED"
    )
    over = await _refund(subs, sub_id, 400, payment_id=pid, refund_id="rf_b", refund_amount=200.01)
    assert over["code"] == "refund_amount_invalid" and over["type"] == "invalid_request_error"
    assert (await _settled(subs, sub_id, "rf_x"))["refund_status"] == "FAILED"
    await _refund(subs, sub_id, payment_id=pid, refund_id="rf_c", refund_amount=200)
    none_left = await _refund(
        subs, sub_id, 400, payment_id=pid, refund_id="rf_d", refund_amount=0.01
    )
    assert none_left["code"] == "refund_amount_invalid"


async def test_idempotent_by_refund_id(subs: httpx.AsyncClient) -> None:
    sub_id, paid = await _debited(subs)
    body = {"payment_id": paid["payment_id"], "refund_id": "rf_same", "refund_amount": 50}
    first = await _refund(subs, sub_id, **body)
    again = await _refund(subs, sub_id, **body)
    assert again["cf_refund_id"] == first["cf_refund_id"]
    other = await _refund(subs, sub_id, 400, **(body | {"refund_amount": 51}))
    assert other["code"] == "refund_id_already_exists"
    # Only one refund was made: 450.00 can still be refunded, not 400.00.
    await _refund(
        subs, sub_id, payment_id=paid["payment_id"], refund_id="rf_rest", refund_amount=450
    )


async def test_refusals(subs: httpx.AsyncClient) -> None:
    sub_id, paid = await _debited(subs)
    pid = paid["payment_id"]
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"refund_id": "rf_1", "refund_amount": 10}, 400, "payment_id_missing"),
        ({"payment_id": pid, "refund_amount": 10}, 400, "refund_id_missing"),
        ({"payment_id": pid, "refund_id": "r", "refund_amount": 10}, 400, "refund_id_invalid"),
        ({"payment_id": pid, "refund_id": "rf_1"}, 400, "refund_amount_invalid"),
        (
            {"payment_id": pid, "refund_id": "rf_1", "refund_amount": "10"},
            400,
            "refund_amount_invalid",
        ),
        (
            {"payment_id": pid, "refund_id": "rf_1", "refund_amount": 0.001},
            400,
            "refund_amount_invalid",
        ),
        (
            {"payment_id": pid, "refund_id": "rf_1", "refund_amount": 10, "refund_note": "x"},
            400,
            "refund_note_invalid",
        ),
        (
            {"payment_id": pid, "refund_id": "rf_1", "refund_amount": 10, "refund_speed": "FAST"},
            400,
            "refund_speed_invalid",
        ),
        # UPI refunds are STANDARD only (§12.5).
        (
            {
                "payment_id": pid,
                "refund_id": "rf_1",
                "refund_amount": 10,
                "refund_speed": "INSTANT",
            },
            400,
            "refund_speed_invalid",
        ),
        (
            {"payment_id": "nope", "refund_id": "rf_1", "refund_amount": 10},
            404,
            "payment_does_not_exist",
        ),
        (
            {
                "subscription_id": "other",
                "payment_id": pid,
                "refund_id": "rf_1",
                "refund_amount": 10,
            },
            400,
            "subscription_id_invalid",
        ),
    ]
    for body, status, code in cases:
        refused = await _refund(subs, sub_id, status, **body)
        assert refused["code"] == code, (body, refused)
    gone = await subs.get(f"/pg/subscriptions/{sub_id}/refunds/rf_1")
    assert gone.status_code == 404 and gone.json()["code"] == "refund_not_found"
    unknown = await _refund(
        subs, "no_such_sub", 404, payment_id=pid, refund_id="rf_1", refund_amount=10
    )
    assert unknown["code"] == "subscription_does_not_exist"


async def test_only_a_debited_charge_is_refunded(subs: httpx.AsyncClient) -> None:
    sub = await active_subscription(subs, "card")
    sub_id = sub["subscription_id"]
    waiting = await charge(subs, sub_id, amount=100)
    refused = await _refund(
        subs, sub_id, 409, payment_id=waiting["payment_id"], refund_id="rf_w", refund_amount=1
    )
    assert refused["code"] == "refund_not_allowed"
    await advance(subs, 2 * DAY)
    # A card mandate's refund may be INSTANT; named by cf_payment_id alone.
    made = await _refund(
        subs,
        sub_id,
        cf_payment_id=waiting["cf_payment_id"],
        refund_id="rf_card",
        refund_amount=100,
        refund_speed="INSTANT",
    )
    assert made["payment_id"] == waiting["payment_id"] and made["refund_speed"] == "INSTANT"
