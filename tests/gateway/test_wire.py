"""Cashfree's wire: exact rupee amounts, the signature test vector, tolerant models."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import strategies as st

from commdesk_billing.gateway import signature
from commdesk_billing.gateway.amounts import AmountError, rupees_text, to_paise, to_rupees
from commdesk_billing.gateway.models import Order, Payment, Refund

states = st.sampled_from(["29", "27", "07"])


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


def test_the_rate_limit_hint_is_bounded_and_never_breaks() -> None:
    from commdesk_billing.gateway.client import rate_limit_hint

    def hint(value: str | None) -> float:
        return rate_limit_hint({} if value is None else {"x-ratelimit-retry": value})

    assert [hint("7"), hint("0.5"), hint("-3"), hint(None), hint("soon")] == [7, 0.5, 0, 1, 1]
    assert [hint("1e9"), hint("inf"), hint("nan"), hint("-inf")] == [300, 1, 1, 1]


def test_signature_check_names_what_is_wrong() -> None:
    body, stamp = b'{"a":1}', "1746427759733"
    now_s = int(stamp) / 1000
    good = {"x-webhook-timestamp": stamp, "x-webhook-signature": signature.sign("k", stamp, body)}
    assert signature.check(good, body, ["k"], max_age_s=60, max_future_s=5, now_s=now_s) == stamp
    cases = [
        ({}, body, "webhook_unsigned"),
        (good | {"x-webhook-timestamp": "17464e3"}, body, "webhook_timestamp_invalid"),
        (good | {"x-webhook-timestamp": "1" * 17}, body, "webhook_timestamp_invalid"),
        (good | {"x-webhook-signature": "x" * 201}, body, "webhook_signature_invalid"),
        (good, body + b" ", "webhook_signature_invalid"),
    ]
    for headers, raw, code in cases:
        with pytest.raises(signature.Refused) as err:
            signature.check(headers, raw, ["k"], max_age_s=60, max_future_s=5, now_s=now_s)
        assert err.value.code == code
    for late_s in (61.0, -6.0):  # too old, too far ahead
        with pytest.raises(signature.Refused) as err:
            signature.check(good, body, ["k"], max_age_s=60, max_future_s=5, now_s=now_s + late_s)
        assert err.value.code == "webhook_stale"
