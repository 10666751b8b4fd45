"""What the logs and error reports must never carry, caught by key and by look; and the
log pipeline itself (structlog and the standard library's loggers) as a process writes it."""

from __future__ import annotations

import json
import logging

import pytest
import structlog
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from commdesk_billing.telemetry import logging as telemetry_logging
from commdesk_billing.telemetry.redact import REDACTED, scrub, text

JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJidXllci0xIn0.Zm9vYmFyYmF6cXV4"


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("paid with 4111111111111111 today", f"paid with {REDACTED} today"),
        ("card 4111 1111 1111 1111.", f"card {REDACTED}."),
        ("card 5500-0000-0000-0004", f"card {REDACTED}"),
        ("amex 378282246310005", f"amex {REDACTED}"),  # 15 digits
        ("4111111111111112", "4111111111111112"),  # fails Luhn: an id, kept
        ("order 12345678901", "order 12345678901"),  # 11 digits: too short for a card
        ("Authorization: Bearer abc.def-ghi_jkl", f"Authorization: Bearer {REDACTED}"),
        ("basic dXNlcjpwYXNz", f"basic {REDACTED}"),
        (f"token={JWT}", f"token={REDACTED}"),
        ("amqp://guest:hunter22@broker:5672/", f"amqp://guest:{REDACTED}@broker:5672/"),
        ("pay to rahul.sharma@okaxis now", f"pay to {REDACTED} now"),
        ("mail buyer@example.com", "mail buyer@example.com"),  # an email is not a VPA
        ("2026-12-07T08:50:37Z", "2026-12-07T08:50:37Z"),
        ("5e3f0c2a-9b7d-41e8-a6c4-b2d0f1e3a5c7", "5e3f0c2a-9b7d-41e8-a6c4-b2d0f1e3a5c7"),
    ],
)
def test_values_that_look_secret_are_replaced(before: str, after: str) -> None:
    assert text(before) == after


def test_keys_that_name_secrets_are_replaced_whole_at_any_depth() -> None:
    event = {
        "event": "payee.account.set",
        "headers": {"Authorization": "x", "X-Client-Secret": "s3", "content-type": "json"},
        "payee": {"account_number": "026291800001191", "ifsc": "YESB0000262", "name": "Trust"},
        "methods": [{"upi_id": "a@b", "vpa": "c@d", "card_number": 4111111111111111}],
        "cashfree_client_secret": "cfsk",
        "refresh_token": "t",
        "password": "p",
        "credits": 3200,
        "amount": 4111111111111111,  # a number that is a card number
        "order_id": 1234567890123,  # a number that is not (fails Luhn)
        "note": None,
    }
    assert scrub(event) == {
        "event": "payee.account.set",
        "headers": {"Authorization": REDACTED, "X-Client-Secret": REDACTED, "content-type": "json"},
        "payee": {"account_number": REDACTED, "ifsc": REDACTED, "name": "Trust"},
        "methods": [{"upi_id": REDACTED, "vpa": REDACTED, "card_number": REDACTED}],
        "cashfree_client_secret": REDACTED,
        "refresh_token": REDACTED,
        "password": REDACTED,
        "credits": 3200,
        "amount": REDACTED,
        "order_id": 1234567890123,
        "note": None,
    }


@pytest.mark.usefixtures("logging_restored")
def test_log_lines_are_labelled_json_with_the_trace_and_scrubbed(
    capfd: pytest.CaptureFixture[str],
) -> None:
    telemetry_logging.configure("INFO", service="worker", env="staging")
    log = structlog.get_logger("test")
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("work") as span:
        ids = span.get_span_context()
        log.warning(
            "payment.webhook.rejected",
            authorization=f"Bearer {JWT}",
            detail="card 4111111111111111 declined",
        )
        logging.getLogger("httpx").error("HTTP Request: GET http://u:pw@host/ Bearer abcdefgh")
        try:
            raise ValueError("vpa rahul@okaxis refused")
        except ValueError:
            log.exception("handler.failed")
    log.info("outside.span")
    lines = [json.loads(ln) for ln in capfd.readouterr().err.splitlines() if ln.startswith("{")]
    assert [ln["event"] for ln in lines] == [
        "payment.webhook.rejected",
        f"HTTP Request: GET http://u:{REDACTED}@host/ Bearer {REDACTED}",
        "handler.failed",
        "outside.span",
    ]
    for line in lines:
        assert (line["service"], line["env"]) == ("worker", "staging")
    assert [ln["level"] for ln in lines] == ["warning", "error", "error", "info"]
    trace_id, span_id = f"{ids.trace_id:032x}", f"{ids.span_id:016x}"
    assert all((ln["trace_id"], ln["span_id"]) == (trace_id, span_id) for ln in lines[:3])
    assert "trace_id" not in lines[3]
    assert lines[0]["authorization"] == REDACTED
    assert lines[0]["detail"] == f"card {REDACTED} declined"
    assert lines[1]["logger"] == "httpx"
    assert "ValueError: vpa [REDACTED] refused" in lines[2]["exception"]
    assert "rahul@okaxis" not in json.dumps(lines) and JWT not in json.dumps(lines)
    assert trace.get_current_span().get_span_context().is_valid is False
