"""Pieces without a server: the signature test vector, the JSON writer, config validation."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from commdesk_billing.gateway.sandbox import SandboxConfig, checkout_url
from commdesk_billing.gateway.sandbox.wire import Money, dumps
from commdesk_billing.gateway.signature import sign, verify

VECTOR_BODY = (
    b'{"data":{"order":{"order_id":"order_OFR_2","order_amount":2.00,"order_currency":"INR",'
    b'"order_tags":null},"payment":{"cf_payment_id":"1453002795","payment_status":"SUCCESS",'
    b'"payment_amount":1.00}},"event_time":"2025-01-15T11:16:10+05:30",'
    b'"type":"PAYMENT_SUCCESS_WEBHOOK"}'
)


def test_signature_vector_from_cashfree_md() -> None:
    signature = sign("test_secret_key", "1746427759733", VECTOR_BODY)
    assert signature == "MT+KnKeIS0j5gihBntwSfXxm816u9KMtCjttKZLT/ok="
    assert verify(["test_secret_key"], "1746427759733", VECTOR_BODY, signature)


def test_the_sandbox_writes_the_vector_byte_for_byte() -> None:
    # The sandbox's writer must keep `2.00` as it is, or receivers verify different bytes.
    body = {
        "data": {
            "order": {
                "order_id": "order_OFR_2",
                "order_amount": Money(200),
                "order_currency": "INR",
                "order_tags": None,
            },
            "payment": {
                "cf_payment_id": "1453002795",
                "payment_status": "SUCCESS",
                "payment_amount": Money(100),
            },
        },
        "event_time": "2025-01-15T11:16:10+05:30",
        "type": "PAYMENT_SUCCESS_WEBHOOK",
    }
    assert dumps(body) == VECTOR_BODY


@pytest.mark.parametrize(
    "bad",
    [
        {"settle_delay_s": -1},
        {"refund_delay_s": -0.5},
        {"webhook_retry_schedule_s": "1,-2"},
        {"error_rate": 1.5},
        {"webhook_duplicates": 0},
        {"rate_limit_profile": "fast"},
        {"rate_limit_multiplier": 0},
        {"webhook_url": "ftp://x"},
        {"client_secret": ""},
    ],
)
def test_config_refuses_nonsense(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        SandboxConfig(**bad)  # type: ignore[arg-type]


def test_config_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BILLING_CASHFREE_CLIENT_ID", "TEST_from_env")
    monkeypatch.setenv("BILLING_CASHFREE_CLIENT_SECRET", "cfsk_ma_test_from_env")
    monkeypatch.setenv("BILLING_SANDBOX_WEBHOOK_RETRY_SCHEDULE_S", "0.2,0.5,1")
    monkeypatch.setenv("BILLING_SANDBOX_RATE_LIMIT_PROFILE", "off")
    config = SandboxConfig()
    assert config.client_id == "TEST_from_env"
    assert config.client_secret == "cfsk_ma_test_from_env"
    assert config.webhook_retry_schedule_s == (0.2, 0.5, 1.0)
    assert config.rate_limit_profile == "off"


def test_config_defaults_are_documented_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BILLING_CASHFREE_CLIENT_ID", raising=False)
    monkeypatch.delenv("BILLING_CASHFREE_CLIENT_SECRET", raising=False)
    config = SandboxConfig()
    assert config.client_id == "TEST_commdesk_sandbox"
    assert config.client_secret == "cfsk_ma_test_commdesk_sandbox_secret"
    assert config.rate_limit_profile == "sandbox"
    assert config.webhook_retry_schedule_s == (120.0, 600.0, 1800.0)


def test_checkout_url_takes_the_root_or_the_pg_base() -> None:
    want = "http://127.0.0.1:8765/pg/view/checkout?payment_session_id=session_abc"
    assert checkout_url("http://127.0.0.1:8765", "session_abc") == want
    assert checkout_url("http://127.0.0.1:8765/pg/", "session_abc") == want
