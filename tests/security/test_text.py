"""Text PostgreSQL cannot store (NUL, lone surrogates) is refused by every model that parses
outside input: API bodies and queue payloads (StrictInput), the queue envelope, Cashfree's
answers and webhook payloads; and headers are read only when sane."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from pydantic import ValidationError

from commdesk_billing.deps import idempotency_key
from commdesk_billing.errors import IdempotencyKeyInvalid
from commdesk_billing.gateway import models as gateway
from commdesk_billing.modules.payments.consumers import ProcessPayload
from commdesk_billing.modules.wallet.consumers import handle_credit
from commdesk_billing.queues.envelope import InvalidMessage, decode, new_envelope
from commdesk_billing.queues.runtime import PermanentError
from commdesk_billing.security.jsondepth import MAX_JSON_DEPTH
from commdesk_billing.security.text import sane_header, unstorable_text

NUL = "\u0000"
SURROGATE = "\ud800"


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("fine", None),
        (f"a{NUL}b", "text contains a NUL character"),
        (f"a{SURROGATE}b", "text contains an unpaired surrogate"),
        ("\ud83d\ude00"[0], "text contains an unpaired surrogate"),
        ("😀", None),
        ({"k": [1, {"deep": f"x{NUL}"}]}, "text contains a NUL character"),
        ({f"key{SURROGATE}": 1}, "text contains an unpaired surrogate"),
        (json.loads('{"a": "\\ud800"}'), "text contains an unpaired surrogate"),
    ],
)
def test_unstorable_text_finds_it_anywhere(value: Any, problem: str | None) -> None:
    assert unstorable_text(value) == problem


def _nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"k": value}
    return value


def test_text_checks_go_as_deep_as_the_parser_lets_json_in() -> None:
    """One depth bound: what `jsondepth` admitted is never refused later as too deep."""
    assert unstorable_text(_nested(MAX_JSON_DEPTH)) is None
    assert unstorable_text(_nested(MAX_JSON_DEPTH + 2)) == "nested too deeply"


def _envelope(**overrides: Any) -> bytes:
    doc = json.loads(new_envelope("wallet.credit.requested", {"credits": 5}).encode())
    return json.dumps({**doc, **overrides}).encode()


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (
            _envelope(payload={"reason": f"x{NUL}"}),
            "not a valid envelope: : Value error, text contains a NUL character",
        ),
        (
            _envelope(correlation_id=SURROGATE),
            "not a valid envelope: : Value error, text contains an unpaired surrogate",
        ),
        (
            _envelope(occurred_at="0001-01-01T00:00:00+23:59"),
            "not a valid envelope: occurred_at: Value error, a timestamp must lie in "
            "[2000-01-01, 2100-01-01) UTC",
        ),
        (
            _envelope(occurred_at="9999-12-31T23:59:59-23:59"),
            "not a valid envelope: occurred_at: Value error, a timestamp must lie in "
            "[2000-01-01, 2100-01-01) UTC",
        ),
        (b"[" * 5000 + b"]" * 5000, "body nests deeper than 32 levels"),
        (
            _envelope(payload={"x": json.loads("[" * 40 + "]" * 40)}),
            "body nests deeper than 32 levels",
        ),
    ],
)
def test_the_envelope_refuses_what_could_not_be_stored(body: bytes, reason: str) -> None:
    with pytest.raises(InvalidMessage) as caught:
        decode(body)
    assert str(caught.value) == reason


@pytest.mark.parametrize(
    ("handler", "payload"),
    [
        (
            handle_credit,
            {
                "wallet_id": str(uuid.uuid4()),
                "credits": 5,
                "source": "promotional",
                "reason": "x",
                "expires_at": "9999-12-31T23:59:59-23:59",
            },
        ),
        (
            handle_credit,
            {
                "wallet_id": str(uuid.uuid4()),
                "credits": 5,
                "source": "promotional",
                "reason": "x",
                "expires_at": "0001-01-01T00:00:00+23:59",
            },
        ),
    ],
)
async def test_queue_payloads_with_absurd_times_are_dead_lettered(
    handler: Any, payload: dict[str, Any]
) -> None:
    # (Text that could not be stored never gets this far: the envelope refuses it, above.)
    envelope = decode(new_envelope("wallet.credit.requested", payload).encode())
    with pytest.raises(PermanentError, match="payload is not valid"):
        await handler(None, envelope)  # refused before the connection is touched


@pytest.mark.parametrize("money", [{"paid_paise": 30000}, {"taxable_paise": 25424}])
async def test_a_credit_message_cannot_bring_a_cost_basis(money: dict[str, int]) -> None:
    """Basis only comes with the money booked behind it (payments/crediting.py): a message
    claiming one would put basis in a lot that deferred revenue does not hold."""
    payload = {
        "wallet_id": str(uuid.uuid4()),
        "credits": 3000,
        "source": "purchase",
        "reason": "pack",
        **money,
    }
    envelope = decode(new_envelope("wallet.credit.requested", payload).encode())
    with pytest.raises(PermanentError, match="payload is not valid"):
        await handle_credit(None, envelope)  # type: ignore[arg-type]


def test_a_processing_payload_with_an_absurd_expiry_is_refused() -> None:
    with pytest.raises(ValidationError):
        ProcessPayload.model_validate(
            {
                "payment_id": str(uuid.uuid4()),
                "order_id": "cdb_order_1",
                "order_expires_at": "0001-01-01T00:00:00+23:59",
                "source": "sync",
            }
        )


PAYMENT = {"cf_payment_id": 1, "payment_status": "SUCCESS", "payment_amount": 300.0}


@pytest.mark.parametrize(
    ("model", "doc"),
    [
        (gateway.Payment, {**PAYMENT, "cf_payment_id": f"1{NUL}"}),
        (gateway.Payment, {**PAYMENT, "payment_message": SURROGATE}),
        (gateway.Payment, {**PAYMENT, "a_field_we_ignore": f"x{NUL}"}),  # kept raw as evidence
        (gateway.Payment, {**PAYMENT, "payment_method": {"upi": {"upi_id": f"x{NUL}@y"}}}),
        (
            gateway.Refund,
            {"refund_id": SURROGATE, "refund_amount": "30.00", "refund_status": "SUCCESS"},
        ),
        (
            gateway.PaymentWebhookData,
            {
                "order": {"order_id": f"cdb{NUL}"},
                "payment": {"cf_payment_id": "1", "payment_status": "SUCCESS"},
            },
        ),
        (gateway.WebhookEnvelope, {"type": f"PAYMENT{NUL}", "data": {}}),
    ],
)
def test_cashfree_models_refuse_unstorable_text(model: Any, doc: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        model.model_validate(doc)


def test_cashfree_models_still_take_what_cashfree_sends() -> None:
    payment = gateway.Payment.model_validate(
        {**PAYMENT, "payment_message": "Transaction successful ✓ — ₹300", "auth_id": "null"}
    )
    assert payment.payment_message == "Transaction successful ✓ — ₹300"


@pytest.mark.parametrize(
    ("value", "kept"),
    [
        ("req-1", "req-1"),
        ("x" * 128, "x" * 128),
        ("x" * 129, None),
        ("", None),
        (None, None),
        (f"a{NUL}", None),
        ("a\nb", None),
    ],
)
def test_sane_header(value: str | None, kept: str | None) -> None:
    assert sane_header(value) == kept


@pytest.mark.parametrize("key", [f"k{NUL}", "k\n", "k\r\n", "ключ", f"k{SURROGATE}"])
async def test_an_idempotency_key_must_be_visible_ascii_throughout(key: str) -> None:
    with pytest.raises(IdempotencyKeyInvalid):
        await idempotency_key(key)
    assert await idempotency_key("k-1") == "k-1"
