"""Charges on a mandate in the sandbox: the pre-debit notification at once and no debit before
24 h after it nor before the schedule date (tested by moving the sandbox clock, never by
sleeping), the UPI/card schedule window, UPI's 1+3 hourly retries, a card failure putting the
mandate on hold, the payer revoking or pausing, limits, `/pg/simulate` with SUBS_PAYMENTS,
and cancelling or retrying a charge (cashfree.md §12.5-§12.9, §15)."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest

from tests.gateway.sandbox.servers import Receiver
from tests.gateway.sandbox.subs_helpers import (
    active_subscription,
    advance,
    advance_to_hour,
    charge,
    create_plan,
    day_text,
    earliest_day,
    fetch_payment,
    fetch_subscription,
    now,
    subs,
    subs_url,
    types,
    wait_events,
)

__all__ = ["subs", "subs_url"]  # fixtures

DAY = 86_400


@pytest.fixture(autouse=True)
async def morning(subs: httpx.AsyncClient) -> None:
    """Each test starts at 09:00 IST: a charge raised then may be for the next day, whose
    debit is then exactly 24 h after the notification."""
    await advance_to_hour(subs, 9)


def _hook(api: httpx.AsyncClient) -> str:
    return str(api.hook)  # type: ignore[attr-defined]


async def _outcome(api: httpx.AsyncClient, sub_id: str, **body: object) -> None:
    answer = await api.post(f"/_sandbox/subscriptions/{sub_id}/charge-outcome", json=body)
    assert answer.status_code == 200, answer.text


async def test_no_debit_before_24h_after_the_notification(
    subs: httpx.AsyncClient, receiver: Receiver
) -> None:
    sub = await active_subscription(subs)
    sub_id = sub["subscription_id"]
    raised = await charge(subs, sub_id, amount=500)
    assert raised["payment_status"] == "INITIALIZED" and raised["data"] is None
    # The notification went at once, before any debit.
    hooks = await wait_events(receiver, _hook(subs), sub_id, 3)
    assert types(hooks)[-1] == "SUBSCRIPTION_PAYMENT_NOTIFICATION_INITIATED"
    assert hooks[-1][1]["payment_id"] == raised["payment_id"]
    await advance(subs, DAY - 60)
    waiting = await fetch_payment(subs, sub_id, raised["payment_id"])
    assert waiting["payment_status"] == "INITIALIZED"
    await advance(subs, 61)
    done = await fetch_payment(subs, sub_id, raised["payment_id"])
    assert done["payment_status"] == "SUCCESS" and done["cf_txn_id"]
    assert done["retry_attempts"] == 0
    hooks = await wait_events(receiver, _hook(subs), sub_id, 4)
    assert types(hooks)[-2:] == [
        "SUBSCRIPTION_PAYMENT_NOTIFICATION_INITIATED",
        "SUBSCRIPTION_PAYMENT_SUCCESS",
    ]
    assert hooks[-1][1]["payment_amount"] == 500
    listed = await subs.get(f"/pg/subscriptions/{sub_id}/payments")
    assert [p["payment_type"] for p in listed.json()] == ["AUTH", "CHARGE"]


async def test_no_debit_before_the_schedule_date(subs: httpx.AsyncClient) -> None:
    sub = await active_subscription(subs)
    today = (await now(subs)).date()
    later = today + timedelta(days=3)
    raised = await charge(subs, sub["subscription_id"], schedule=later)
    moved = await advance(subs, DAY + 3600)  # the 24 h are over, the date is not there yet
    assert moved.date() < later
    pending = await fetch_payment(subs, sub["subscription_id"], raised["payment_id"])
    assert pending["payment_status"] == "INITIALIZED"
    assert pending["payment_schedule_date"].startswith(later.isoformat())
    await advance(subs, 3 * DAY)
    done = await fetch_payment(subs, sub["subscription_id"], raised["payment_id"])
    assert done["payment_status"] == "SUCCESS"


async def test_schedule_window_for_upi_and_cards(subs: httpx.AsyncClient) -> None:
    await advance_to_hour(subs, 10)
    sub = await active_subscription(subs)
    sub_id = sub["subscription_id"]
    today = (await now(subs)).date()
    for day in (today, today + timedelta(days=15)):
        refused = await charge(subs, sub_id, schedule=day, status=400)
        assert refused["code"] == "payment_schedule_date_invalid"
    await charge(subs, sub_id, schedule=today + timedelta(days=14))
    missing = await subs.post(
        "/pg/subscriptions/pay",
        json={
            "subscription_id": sub_id,
            "payment_id": "no_date_1",
            "payment_type": "CHARGE",
            "payment_amount": 10,
        },
    )
    assert missing.status_code == 400 and missing.json()["code"] == "payment_schedule_date_missing"
    # From 21:00 IST the next day is closed: T+2 at the earliest.
    late = await advance_to_hour(subs, 21, 30)
    tomorrow = late.date() + timedelta(days=1)
    assert earliest_day(late) == tomorrow + timedelta(days=1)
    refused = await charge(subs, sub_id, schedule=tomorrow, status=400)
    assert refused["code"] == "payment_schedule_date_invalid"
    await charge(subs, sub_id, schedule=tomorrow + timedelta(days=1))


async def test_limits_and_only_on_an_active_mandate(subs: httpx.AsyncClient) -> None:
    plan = await create_plan(subs, max_amount=20000)
    sub = await active_subscription(subs, plan_id=plan["plan_id"])
    sub_id = sub["subscription_id"]
    over_afa = await charge(subs, sub_id, amount=15000.01, status=400)
    assert over_afa["code"] == "payment_amount_invalid" and "15000.00" in over_afa["message"]
    await charge(subs, sub_id, amount=15000)
    small = await create_plan(subs, max_amount=100)
    capped = await active_subscription(subs, plan_id=small["plan_id"])
    over_max = await charge(subs, capped["subscription_id"], amount=100.01, status=400)
    assert over_max["code"] == "payment_amount_invalid"
    answer = await subs.post(
        "/pg/subscriptions",
        json={
            "subscription_id": "never_authorised_" + sub_id[-8:],
            "customer_details": {"customer_email": "a@b.in", "customer_phone": "9999999999"},
            "plan_details": {"plan_id": plan["plan_id"]},
        },
    )
    fresh = answer.json()
    refused = await charge(subs, fresh["subscription_id"], status=400)
    assert refused["code"] == "subscription_not_active"


async def test_upi_failure_is_retried_three_times_hourly_then_fails(
    subs: httpx.AsyncClient, receiver: Receiver
) -> None:
    sub = await active_subscription(subs)
    sub_id = sub["subscription_id"]
    await _outcome(subs, sub_id, outcome="failure", failure_reason="INSUFFICIENT_FUNDS")
    raised = await charge(subs, sub_id)
    await advance(subs, DAY + 1)
    for retry in (1, 2, 3):
        payment = await fetch_payment(subs, sub_id, raised["payment_id"])
        assert payment["payment_status"] == "PENDING"
        assert payment["retry_attempts"] == retry
        assert payment["failure_details"]["failure_reason"] == "INSUFFICIENT_FUNDS"
        await advance(subs, 3600)
    failed = await fetch_payment(subs, sub_id, raised["payment_id"])
    assert failed["payment_status"] == "FAILED" and failed["retry_attempts"] == 3
    hooks = await wait_events(receiver, _hook(subs), sub_id, 4)
    assert types(hooks)[2:] == [
        "SUBSCRIPTION_PAYMENT_NOTIFICATION_INITIATED",
        "SUBSCRIPTION_PAYMENT_FAILED",
    ]
    # A UPI failure leaves the mandate active.
    assert (await fetch_subscription(subs, sub_id))["subscription_status"] == "ACTIVE"


async def test_upi_retry_that_succeeds(subs: httpx.AsyncClient) -> None:
    sub = await active_subscription(subs)
    sub_id = sub["subscription_id"]
    await _outcome(subs, sub_id, outcome="failure", failed_attempts=2)
    raised = await charge(subs, sub_id)
    await advance(subs, DAY + 2 * 3600 + 1)  # first attempt and two retries, in one move
    done = await fetch_payment(subs, sub_id, raised["payment_id"])
    assert done["payment_status"] == "SUCCESS" and done["retry_attempts"] == 2


async def test_card_failure_is_final_and_puts_the_mandate_on_hold(
    subs: httpx.AsyncClient, receiver: Receiver
) -> None:
    sub = await active_subscription(subs, method="card")
    sub_id = sub["subscription_id"]
    await _outcome(subs, sub_id, outcome="failure", failure_reason="CARD_DECLINED")
    raised = await charge(subs, sub_id)
    await advance(subs, DAY + 1)
    failed = await fetch_payment(subs, sub_id, raised["payment_id"])
    assert failed["payment_status"] == "FAILED" and failed["retry_attempts"] == 0
    assert (await fetch_subscription(subs, sub_id))["subscription_status"] == "ON_HOLD"
    hooks = await wait_events(receiver, _hook(subs), sub_id, 5)
    # Both are sent at the same moment of the sandbox's clock, each on its own delivery:
    # they may arrive either way round (as Cashfree's may).
    assert sorted(types(hooks)[-2:]) == [
        "SUBSCRIPTION_PAYMENT_FAILED",
        "SUBSCRIPTION_STATUS_CHANGED",
    ]
    back = await subs.post(
        f"/pg/subscriptions/{sub_id}/manage", json={"subscription_id": sub_id, "action": "ACTIVATE"}
    )
    assert back.json()["subscription_status"] == "ACTIVE"


async def test_payer_revokes_the_mandate(subs: httpx.AsyncClient, receiver: Receiver) -> None:
    sub = await active_subscription(subs)
    sub_id = sub["subscription_id"]
    raised = await charge(subs, sub_id)
    revoked = await subs.post(f"/_sandbox/subscriptions/{sub_id}/revoke")
    assert revoked.status_code == 200
    assert revoked.json()["subscription_status"] == "CUSTOMER_CANCELLED"
    failed = await fetch_payment(subs, sub_id, raised["payment_id"])
    assert failed["payment_status"] == "FAILED"
    assert failed["failure_details"]["failure_reason"] == "MANDATE_REVOKED"
    hooks = await wait_events(receiver, _hook(subs), sub_id, 5)
    assert types(hooks)[-2:] == ["SUBSCRIPTION_STATUS_CHANGED", "SUBSCRIPTION_PAYMENT_FAILED"]
    assert hooks[-2][1]["subscription_details"]["subscription_status"] == "CUSTOMER_CANCELLED"
    refused = await charge(subs, sub_id, status=400)
    assert refused["code"] == "subscription_not_active"


async def test_revocation_found_at_debit_time(subs: httpx.AsyncClient) -> None:
    sub = await active_subscription(subs)
    sub_id = sub["subscription_id"]
    await _outcome(subs, sub_id, outcome="revoked")
    raised = await charge(subs, sub_id)
    await advance(subs, DAY + 1)
    failed = await fetch_payment(subs, sub_id, raised["payment_id"])
    assert failed["failure_details"]["failure_reason"] == "MANDATE_REVOKED"
    assert (await fetch_subscription(subs, sub_id))["subscription_status"] == "CUSTOMER_CANCELLED"


async def test_payer_pauses_and_resumes(subs: httpx.AsyncClient, receiver: Receiver) -> None:
    sub = await active_subscription(subs)
    sub_id = sub["subscription_id"]
    raised = await charge(subs, sub_id)
    paused = await subs.post(f"/_sandbox/subscriptions/{sub_id}/pause")
    assert paused.json()["subscription_status"] == "CUSTOMER_PAUSED"
    assert (await charge(subs, sub_id, status=400))["code"] == "subscription_not_active"
    await advance(subs, DAY + 1)  # the debit falls due while paused
    failed = await fetch_payment(subs, sub_id, raised["payment_id"])
    assert failed["failure_details"]["failure_reason"] == "MANDATE_PAUSED"
    resumed = await subs.post(f"/_sandbox/subscriptions/{sub_id}/resume")
    assert resumed.json()["subscription_status"] == "ACTIVE"
    await _outcome(subs, sub_id, outcome="paused")
    second = await charge(subs, sub_id)
    await advance(subs, DAY + 1)
    assert (await fetch_payment(subs, sub_id, second["payment_id"]))["payment_status"] == "FAILED"
    assert (await fetch_subscription(subs, sub_id))["subscription_status"] == "CUSTOMER_PAUSED"
    hooks = await wait_events(receiver, _hook(subs), sub_id, 8)
    statuses = [
        d["subscription_details"]["subscription_status"]
        for t, d in hooks
        if t == "SUBSCRIPTION_STATUS_CHANGED"
    ]
    assert statuses == ["ACTIVE", "CUSTOMER_PAUSED", "ACTIVE", "CUSTOMER_PAUSED"]


async def test_simulate_decides_a_charge_at_its_debit_time(subs: httpx.AsyncClient) -> None:
    sub = await active_subscription(subs, method="card")
    sub_id = sub["subscription_id"]
    raised = await charge(subs, sub_id)
    sim = await subs.post(
        "/pg/simulate",
        json={
            "entity": "SUBS_PAYMENTS",
            "entity_id": raised["payment_id"],
            "entity_simulation": {"payment_status": "FAILED", "payment_error_code": "DECLINED"},
        },
    )
    assert sim.status_code == 200, sim.text
    # The 24-hour rule still holds.
    still = await fetch_payment(subs, sub_id, raised["payment_id"])
    assert still["payment_status"] == "INITIALIZED"
    await advance(subs, DAY + 1)
    failed = await fetch_payment(subs, sub_id, raised["payment_id"])
    assert failed["payment_status"] == "FAILED"
    assert failed["failure_details"]["failure_reason"] == "DECLINED"


async def test_cancel_and_retry_a_charge(subs: httpx.AsyncClient, receiver: Receiver) -> None:
    sub = await active_subscription(subs, method="card")
    sub_id = sub["subscription_id"]
    first = await charge(subs, sub_id)
    path = f"/pg/subscriptions/{sub_id}/payments/{first['payment_id']}/manage"
    cancel = {"subscription_id": sub_id, "payment_id": first["payment_id"], "action": "CANCEL"}
    answer = await subs.post(path, json=cancel)
    assert answer.status_code == 200 and answer.json()["payment_status"] == "CANCELLED"
    assert (await subs.post(path, json=cancel)).json()["code"] == "action_not_allowed"
    hooks = await wait_events(receiver, _hook(subs), sub_id, 4)
    assert types(hooks)[-1] == "SUBSCRIPTION_PAYMENT_CANCELLED"

    await _outcome(subs, sub_id, outcome="failure", failed_attempts=1)
    second = await charge(subs, sub_id)
    await advance(subs, DAY + 1)
    assert (await fetch_subscription(subs, sub_id))["subscription_status"] == "ON_HOLD"
    await subs.post(
        f"/pg/subscriptions/{sub_id}/manage", json={"subscription_id": sub_id, "action": "ACTIVATE"}
    )
    path = f"/pg/subscriptions/{sub_id}/payments/{second['payment_id']}/manage"
    retry = {"subscription_id": sub_id, "payment_id": second["payment_id"], "action": "RETRY"}
    missing = await subs.post(path, json=retry)
    assert missing.json()["code"] == "next_scheduled_time_missing"
    when = day_text((await now(subs)).date() + timedelta(days=2))
    again = await subs.post(path, json=retry | {"action_details": {"next_scheduled_time": when}})
    assert again.status_code == 200 and again.json()["payment_status"] == "INITIALIZED"
    await advance(subs, 3 * DAY)
    done = await fetch_payment(subs, sub_id, second["payment_id"])
    assert done["payment_status"] == "SUCCESS"
    hooks = await wait_events(receiver, _hook(subs), sub_id, 10)
    notices = [h for h in receiver.got(_hook(subs)) if b"NOTIFICATION_INITIATED" in h.body]
    keys = {
        h.headers["x-idempotency-key"] for h in notices if second["payment_id"].encode() in h.body
    }
    assert len(keys) == 2  # the retry's notification is a new event
    assert types(hooks)[-1] == "SUBSCRIPTION_PAYMENT_SUCCESS"


async def test_unknown_payment_and_bad_manage(subs: httpx.AsyncClient) -> None:
    sub = await active_subscription(subs)
    sub_id = sub["subscription_id"]
    missing = await subs.get(f"/pg/subscriptions/{sub_id}/payments/nope")
    assert missing.status_code == 404 and missing.json()["code"] == "payment_does_not_exist"
    raised = await charge(subs, sub_id)
    path = f"/pg/subscriptions/{sub_id}/payments/{raised['payment_id']}/manage"
    bad = await subs.post(path, json={"action": "REFUND"})
    assert bad.status_code == 400 and bad.json()["code"] == "action_invalid"


async def test_a_queued_refusal_answers_the_next_charge_request_even_a_repeat(
    subs: httpx.AsyncClient,
) -> None:
    """`/_sandbox/subscriptions/{id}/charge-refusal`: the next CHARGE request is answered 400
    with the code asked for before its payment_id is looked up (a repeat of a charge that
    exists is refused too, as a Cashfree validating the request first would); one request
    spends one refusal, then the repeat is answered with the first charge again."""
    sub = await active_subscription(subs)
    sub_id = sub["subscription_id"]
    first = await charge(subs, sub_id, amount=500, payment_id="chg_refused_repeat")
    bad = await subs.post(
        f"/_sandbox/subscriptions/{sub_id}/charge-refusal", json={"code": "Not A Code"}
    )
    assert (bad.status_code, bad.json()["code"]) == (400, "request_invalid"), bad.text
    r = await subs.post(
        f"/_sandbox/subscriptions/{sub_id}/charge-refusal",
        json={"code": "payment_schedule_date_invalid"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["refusals"] == [
        {
            "code": "payment_schedule_date_invalid",
            "message": "payment_schedule_date : is not allowed",
        }
    ]
    refused = await charge(subs, sub_id, amount=500, payment_id="chg_refused_repeat", status=400)
    assert refused["code"] == "payment_schedule_date_invalid"
    again = await charge(subs, sub_id, amount=500, payment_id="chg_refused_repeat")
    assert again["cf_payment_id"] == first["cf_payment_id"]
