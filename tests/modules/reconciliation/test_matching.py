"""The gateway comparison and the payout comparison on their own, row by row: what is an
expected difference (Cashfree's fee and the GST on it) and what is a finding, with figures
the sandbox never produces (a fee whose GST is not 18%, a net that does not add up, a second
capture on an order, a transfer ended at Cashfree while ours is in flight)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from commdesk_billing.gateway.payout_models import Transfer
from commdesk_billing.gateway.split_models import ReconRow
from commdesk_billing.modules.reconciliation.matching import OurPayment, OurRefund, Window, match
from commdesk_billing.modules.reconciliation.payouts import OurTransfer, compare

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
WINDOW = Window(
    now=NOW,
    since=NOW - timedelta(days=14),
    grace=timedelta(hours=1),
    settle_after=timedelta(days=3),
)
PAID_AT = NOW - timedelta(days=1)


def _row(
    event_id: str,
    order_id: str,
    amount: float,
    *,
    kind: str = "PAYMENT",
    charge: float = 0.0,
    tax: float = 0.0,
    settles: float | None = None,
    settlement: int | None = 901,
    refund_id: str | None = None,
    at: datetime = PAID_AT,
) -> ReconRow:
    doc: dict[str, Any] = {
        "event_details": {
            "event_id": event_id,
            "event_type": kind,
            "sale_type": "CREDIT" if kind == "PAYMENT" else "DEBIT",
            "event_status": "SUCCESS",
            "event_amount": amount,
            "event_settlement_amount": round(amount - charge - tax, 2)
            if settles is None
            else settles,
            "event_service_charge": charge,
            "event_service_tax": tax,
            "event_time": at.isoformat(),
        },
        "order_details": {"order_id": order_id, "order_amount": amount},
        "settlement_details": {"cf_settlement_id": settlement} if settlement else None,
        "refund_details": {"refund_id": refund_id} if refund_id else None,
    }
    return ReconRow.model_validate(doc)


def _kinds(result: Any) -> set[tuple[str, str]]:
    return {(o.kind.value, o.reference) for o in result.observed}


def test_a_payment_whose_only_difference_is_the_fee_and_its_gst_is_matched_and_explained() -> None:
    ours = [OurPayment("o1", "cf1", 30_000, "CREDITED", PAID_AT)]
    # ₹300: 1.75 % fee = ₹5.25, 18 % GST on it = ₹0.94 (rounded down), settles ₹293.81.
    result = match(ours, [], [_row("cf1", "o1", 300.00, charge=5.25, tax=0.94)], [], WINDOW)
    assert (result.checked, result.matched, result.explained_differences) == (1, 1, 1)
    assert result.observed == []


def test_a_net_that_does_not_add_up_and_a_gst_that_is_not_18_percent_are_findings() -> None:
    ours = [
        OurPayment("o1", "cf1", 30_000, "CREDITED", PAID_AT),
        OurPayment("o2", "cf2", 30_000, "CREDITED", PAID_AT),
    ]
    rows = [
        _row("cf1", "o1", 300.00, charge=5.25, tax=0.94, settles=290.00),
        _row("cf2", "o2", 300.00, charge=5.25, tax=2.00),
    ]
    result = match(ours, [], rows, [], WINDOW)
    assert (result.checked, result.matched, result.explained_differences) == (2, 0, 0)
    assert _kinds(result) == {
        ("amount_differs", "payment:o1:net"),
        ("amount_differs", "payment:o2:gst_on_fee"),
    }
    by = {o.reference: o for o in result.observed}
    assert (by["payment:o1:net"].expected_paise, by["payment:o1:net"].actual_paise) == (
        29_381,
        29_000,
    )
    assert (
        by["payment:o2:gst_on_fee"].expected_paise,
        by["payment:o2:gst_on_fee"].actual_paise,
    ) == (94, 200)


def test_a_second_capture_on_one_order_is_missing_here() -> None:
    ours = [OurPayment("o1", "cf1", 30_000, "CREDITED", PAID_AT)]
    rows = [_row("cf1", "o1", 300.00), _row("cf9", "o1", 300.00)]
    result = match(ours, [], rows, [], WINDOW)
    assert _kinds(result) == {("missing_here", "payment:cf9")}
    assert result.observed[0].actual_paise == 30_000


def test_what_is_younger_than_the_grace_is_not_compared_yet() -> None:
    fresh = NOW - timedelta(minutes=5)
    ours = [OurPayment("o1", "cf1", 30_000, "PAID", fresh)]
    rows = [_row("cf7", "o7", 10.00, at=fresh)]
    result = match(ours, [], rows, [], WINDOW)
    assert (result.checked, result.observed) == (0, [])


def test_late_settlement_counts_from_t_plus_n() -> None:
    on_time = OurPayment("o1", "cf1", 30_000, "CREDITED", NOW - timedelta(days=2))
    late = OurPayment("o2", "cf2", 30_000, "CREDITED", NOW - timedelta(days=4))
    rows = [
        _row("cf1", "o1", 300.00, settlement=None, at=on_time.paid_at),
        _row("cf2", "o2", 300.00, settlement=None, at=late.paid_at),
    ]
    result = match([on_time, late], [], rows, [], WINDOW)
    assert _kinds(result) == {("unsettled", "payment:o2")}


def test_refunds_match_on_cashfree_id_or_ours_and_compare_amounts() -> None:
    refunds = [
        OurRefund("rf_a", "cfr_a", "o1", 10_000, PAID_AT),
        OurRefund("rf_b", None, "o2", 5_000, PAID_AT),  # Cashfree's id never recorded here
        OurRefund("rf_c", "cfr_c", "o3", 2_000, PAID_AT),
    ]
    rows = [
        _row("cfr_a", "o1", 100.00, kind="REFUND"),
        _row("cfr_b", "o2", 60.00, kind="REFUND", refund_id="rf_b"),
    ]
    result = match([], refunds, rows, [], WINDOW)
    assert _kinds(result) == {
        ("amount_differs", "refund:rf_b"),
        ("missing_at_cashfree", "refund:rf_c"),
    }
    assert (result.checked, result.matched) == (3, 1)


def test_one_event_in_two_settlements_is_settled_twice() -> None:
    ours = [OurPayment("o1", "cf1", 30_000, "CREDITED", PAID_AT)]
    settled = [_row("cf1", "o1", 300.00, settlement=901), _row("cf1", "o1", 300.00, settlement=902)]
    result = match(ours, [], [_row("cf1", "o1", 300.00)], settled, WINDOW)
    [twice] = result.observed
    assert (twice.kind.value, twice.refs["cf_settlement_ids"]) == ("settled_twice", ["901", "902"])
    assert (twice.expected_paise, twice.actual_paise) == (30_000, 60_000)


def _transfer(status: str, code: str, utr: str | None, amount: float = 1093.26) -> Transfer:
    return Transfer.model_validate(
        {
            "transfer_id": "stl1a1",
            "status": status,
            "status_code": code,
            "transfer_amount": amount,
            "transfer_utr": utr,
        }
    )


def _ours(
    status: str, utr: str | None, updated: datetime = NOW - timedelta(hours=2)
) -> OurTransfer:
    return OurTransfer("stl1a1", uuid.uuid4(), 109_326, status, utr, "paid", utr, updated)


def test_payout_comparisons() -> None:
    assert compare(_ours("success", "U1"), _transfer("SUCCESS", "COMPLETED", "U1"), WINDOW) == []
    assert compare(_ours("sent", None), _transfer("PENDING", "SENT_TO_BANK", None), WINDOW) == []
    [ended] = compare(_ours("sent", None), _transfer("FAILED", "IMPS_MODE_FAIL", None), WINDOW)
    assert ended.kind.value == "payout_mismatch" and "ended it FAILED" in ended.detail
    # Within the grace the webhook or the sync may still be on its way.
    young = _ours("sent", None, updated=NOW - timedelta(minutes=5))
    assert compare(young, _transfer("FAILED", "IMPS_MODE_FAIL", None), WINDOW) == []
    [utr] = compare(_ours("success", "U1"), _transfer("SUCCESS", "COMPLETED", "U2"), WINDOW)
    assert "our UTR U1, Cashfree's U2" in utr.detail
    [status] = compare(_ours("failed", None), _transfer("SUCCESS", "COMPLETED", "U3"), WINDOW)
    assert status.refs["cashfree"]["status"] == "SUCCESS"
    [amount] = compare(_ours("success", "U1"), _transfer("SUCCESS", "COMPLETED", "U1", 1.0), WINDOW)
    assert (amount.kind.value, amount.expected_paise, amount.actual_paise) == (
        "amount_differs",
        109_326,
        100,
    )


def test_a_mandate_charge_is_compared_when_reported_and_never_called_missing() -> None:
    reported = OurPayment("sub_1", "cfm1", 50_000, "CREDITED", PAID_AT, on_order=False)
    unreported = OurPayment("sub_2", "cfm2", 50_000, "CREDITED", PAID_AT, on_order=False)
    rows = [_row("cfm1", "sub_1", 400.00)]
    result = match([reported, unreported], [], rows, [], WINDOW)
    assert _kinds(result) == {("amount_differs", "payment:sub_1")}
    assert result.checked == 1
