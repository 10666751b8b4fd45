"""Money math, the state machine's table and the tolerant gateway models, without services."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from commdesk_billing.gateway import signature
from commdesk_billing.gateway.amounts import AmountError, rupees_text, to_paise, to_rupees
from commdesk_billing.gateway.models import Order, Payment, Refund
from commdesk_billing.modules.payments.state import ALLOWED, OPEN, Status, can_move
from commdesk_billing.modules.tax.gst import compute

states = st.sampled_from(["29", "27", "07"])


@given(
    price=st.integers(min_value=1, max_value=10**10),
    rate=st.integers(min_value=0, max_value=10_000),
    mode=st.sampled_from(["inclusive", "exclusive"]),
    buyer=states,
)
def test_gst_parts_always_add_up(price: int, rate: int, mode: str, buyer: str) -> None:
    g = compute(price, rate_bp=rate, mode=mode, buyer_state=buyer, seller_state="29")  # type: ignore[arg-type]
    assert g.taxable_paise + g.tax_paise == g.amount_paise
    assert g.cgst_paise + g.sgst_paise + g.igst_paise == g.tax_paise
    assert min(g.taxable_paise, g.tax_paise, g.cgst_paise, g.sgst_paise, g.igst_paise) >= 0
    if buyer == "29":
        assert g.igst_paise == 0 and abs(g.cgst_paise - g.sgst_paise) <= 1
    else:
        assert g.cgst_paise == g.sgst_paise == 0
    if mode == "inclusive":
        assert g.amount_paise == price
        # The tax is the rate applied to the taxable value, to within half a paisa's rounding.
        assert abs(g.tax_paise * 10_000 - g.taxable_paise * rate) <= 10_000 + rate
    else:
        assert g.taxable_paise == price


def test_gst_on_the_packs() -> None:
    got = {
        p: compute(p, rate_bp=1800, mode="inclusive", buyer_state="29", seller_state="29")
        for p in (15000, 30000, 50000, 100000)
    }
    assert {p: (g.taxable_paise, g.cgst_paise, g.sgst_paise) for p, g in got.items()} == {
        15000: (12712, 1144, 1144),
        30000: (25424, 2288, 2288),
        50000: (42373, 3813, 3814),
        100000: (84746, 7627, 7627),
    }
    igst = compute(30000, rate_bp=1800, mode="inclusive", buyer_state="27", seller_state="29")
    assert (igst.igst_paise, igst.cgst_paise) == (4576, 0)
    with pytest.raises(ValueError):
        compute(0, rate_bp=1800, mode="inclusive", buyer_state="29", seller_state="29")


def test_amounts_are_exact() -> None:
    assert to_paise("300.00") == to_paise(Decimal("300")) == to_paise(300) == 30000
    assert to_paise(Decimal("0.01")) == 1
    for bad in ("1.001", "abc", "NaN", "Infinity", True):
        with pytest.raises(AmountError):
            to_paise(bad)
    assert str(to_rupees(30000)) == "300.00" and rupees_text(5) == "0.05"
    assert rupees_text(-150) == "-1.50"


def test_the_cashfree_signature_test_vector() -> None:
    body = (
        b'{"data":{"order":{"order_id":"order_OFR_2","order_amount":2.00,"order_currency":"INR",'
        b'"order_tags":null},"payment":{"cf_payment_id":"1453002795","payment_status":"SUCCESS",'
        b'"payment_amount":1.00}},"event_time":"2025-01-15T11:16:10+05:30",'
        b'"type":"PAYMENT_SUCCESS_WEBHOOK"}'
    )
    expected = "MT+KnKeIS0j5gihBntwSfXxm816u9KMtCjttKZLT/ok="
    assert signature.sign("test_secret_key", "1746427759733", body) == expected
    assert signature.verify(["old", "test_secret_key"], "1746427759733", body, expected)
    assert not signature.verify(["test_secret_key"], "1746427759734", body, expected)
    assert not signature.verify(["test_secret_key"], "1746427759733", body + b" ", expected)


def test_gateway_models_tolerate_what_cashfree_may_send() -> None:
    order = Order.model_validate(
        {
            "cf_order_id": 2149460581,
            "order_id": "o1",
            "order_amount": Decimal("22"),
            "order_currency": "INR",
            "order_status": "SOMETHING_NEW",
            "brand_new_field": {"x": 1},
            "order_expiry_time": "2023-09-09T18:02:46+05:30",
        }
    )
    assert order.cf_order_id == "2149460581" and order.order_amount_paise == 2200
    assert order.order_status == "SOMETHING_NEW"
    pay = Payment.model_validate(
        {
            "cf_payment_id": 1636676360,
            "payment_status": "failed",
            "payment_amount": "1.00",
            "auth_id": "null",
            "payment_method": {"netbanking": {"netbanking_bank_code": "3054"}},
            "error_details": {"error_code": "TRANSACTION_DECLINED", "extra": 1},
        }
    )
    assert pay.cf_payment_id == "1636676360" and pay.payment_status == "FAILED"
    assert pay.method == "netbanking" and pay.payment_amount_paise == 100
    refund = Refund.model_validate(
        {"refund_id": "r1", "refund_amount": 2.0, "refund_status": "FAILED", "cf_refund_id": 9}
    )
    assert refund.refund_amount_paise == 200 and refund.cf_refund_id == "9"


def test_the_state_machine_never_goes_back_from_money() -> None:
    for to, sources in ALLOWED.items():
        assert Status.CREDITED not in sources or to is Status.CREDITED
        if to is not Status.CREDITED:
            assert Status.PAID not in sources
    assert can_move(Status.EXPIRED, Status.PAID)  # a late success is still owed its credits
    assert can_move(Status.CREATED, Status.PAID)  # so is one whose create answer was lost
    assert not can_move(Status.PAID, Status.FAILED)
    assert not can_move(Status.CREDITED, Status.PAID)
    assert not can_move(Status.REVIEW, Status.PAID)  # review is resolved by a person
    assert OPEN.isdisjoint({Status.PAID, Status.CREDITED, Status.REVIEW})
