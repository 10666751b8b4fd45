"""The public vocabulary: each internal event the money modules announce becomes its public
event(s), with public fields only; every public type has a source."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from commdesk_billing import wiring
from commdesk_billing.modules.events.vocabulary import (
    INTERNAL_TYPES,
    PUBLIC_TYPES,
    PublicEvent,
    Unreadable,
    translate,
)
from commdesk_billing.queues.envelope import new_envelope

USER = uuid.uuid4()
PAYMENT = uuid.uuid4()


async def _user_of(user_id: uuid.UUID) -> str | None:
    return "cd-user-1" if user_id == USER else None


async def _payment_of(payment_id: uuid.UUID) -> dict[str, Any] | None:
    if payment_id != PAYMENT:
        return None
    return {
        "payment_id": str(PAYMENT),
        "order_id": "ord_1",
        "user": "cd-user-1",
        "amount_paise": 35400,
        "credits": 3200,
        "kind": "pack",
    }


async def _public(message_type: str, payload: dict[str, Any], **kw: Any) -> list[PublicEvent]:
    return await translate(new_envelope(message_type, payload, **kw), _user_of, _payment_of)


# One example of each internal event, as its producer writes it.
SAMPLES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "payment.status_changed": (
        {"payment_id": str(PAYMENT), "status": "PAID", "from": "ACTIVE"},
        {},
    ),
    "payment.credited": (
        {
            "payment_id": str(PAYMENT),
            "order_id": "ord_1",
            "user_id": str(USER),
            "wallet_id": str(uuid.uuid4()),
            "amount_paise": 35400,
            "taxable_paise": 30000,
            "gst_amount_paise": 5400,
            "credits": 3200,
            "pack_code": "pack_300",
            "kind": "pack",
            "channel": "order",
        },
        {},
    ),
    "refund.created": (
        {
            "refund_id": str(uuid.uuid4()),
            "payment_id": str(PAYMENT),
            "user_id": str(USER),
            "amount_paise": 100,
            "credits": 10,
        },
        {},
    ),
    "refund.succeeded": (
        {
            "refund_id": str(uuid.uuid4()),
            "payment_id": str(PAYMENT),
            "user_id": str(USER),
            "amount_paise": 100,
            "credits": 10,
        },
        {},
    ),
    "refund.failed": (
        {
            "refund_id": str(uuid.uuid4()),
            "payment_id": str(PAYMENT),
            "user_id": str(USER),
            "amount_paise": 100,
            "status": "FAILED",
        },
        {},
    ),
    "wallet.low_balance": (
        {
            "wallet_id": str(uuid.uuid4()),
            "user_id": str(USER),
            "available_credits": 40,
            "threshold": 100,
            "trigger_level": 120,
        },
        {"correlation_id": str(uuid.uuid4())},
    ),
    "auto_recharge.succeeded": (
        {
            "recharge_id": str(uuid.uuid4()),
            "wallet_id": str(uuid.uuid4()),
            "user_id": str(USER),
            "payment_id": str(PAYMENT),
            "amount_paise": 35400,
            "credits": 3200,
        },
        {},
    ),
    "auto_recharge.failed": (
        {
            "recharge_id": str(uuid.uuid4()),
            "wallet_id": str(uuid.uuid4()),
            "user_id": str(USER),
            "payment_id": None,
            "reason": "gateway said: card 4111… declined",
            "retry_at": None,
            "consecutive_failures": 3,
        },
        {},
    ),
    "auto_recharge.disabled": (
        {
            "wallet_id": str(uuid.uuid4()),
            "user_id": str(USER),
            "consecutive_failures": 3,
            "recharge_id": str(uuid.uuid4()),
        },
        {},
    ),
    "community.spent": (
        {
            "spend_id": str(uuid.uuid4()),
            "community_id": "chess",
            "wallet_id": str(uuid.uuid4()),
            "user_external_id": "cd-user-1",
            "credits": 10,
            "fee_credits": 1,
            "community_credits": 9,
            "reference": None,
        },
        {},
    ),
    "settlement.paid": (
        {
            "settlement_id": str(uuid.uuid4()),
            "payee_id": str(uuid.uuid4()),
            "gross_paise": 1000,
            "net_paise": 900,
            "utr": "UTR1",
        },
        {},
    ),
    "settlement.failed": (
        {
            "settlement_id": str(uuid.uuid4()),
            "payee_id": str(uuid.uuid4()),
            "gross_paise": 1000,
            "net_paise": 900,
            "code": "INVALID_ACCOUNT",
            "reason": "bank said: account 1234 closed",
        },
        {},
    ),
    "settlement.reversed": (
        {
            "settlement_id": str(uuid.uuid4()),
            "payee_id": str(uuid.uuid4()),
            "gross_paise": 1000,
            "net_paise": 900,
            "code": "REVERSED",
            "reason": "returned",
        },
        {},
    ),
}


async def test_every_public_type_has_a_source_and_carries_no_internal_field() -> None:
    assert set(SAMPLES) == set(INTERNAL_TYPES)
    made: set[str] = set()
    for message_type, (payload, kw) in SAMPLES.items():
        for event in await _public(message_type, payload, **kw):
            made.add(event.type)
            # Billing's user row id, free-text reasons and channels stay inside.
            assert not {"user_id", "reason", "channel", "user_external_id"} & set(event.data)
            if "user" in event.data:
                assert event.data["user"] == "cd-user-1"
    failed = await _public(
        "payment.status_changed", {"payment_id": str(PAYMENT), "status": "EXPIRED"}
    )
    made |= {e.type for e in failed}
    assert made == set(PUBLIC_TYPES)


async def test_every_internal_type_is_routed_to_the_outbound_queue() -> None:
    for message_type in INTERNAL_TYPES:
        assert "webhooks.outbound" in wiring.TABLE.destinations(message_type), message_type


async def test_a_payment_move_maps_to_paid_failed_or_nothing() -> None:
    async def types(status: str) -> list[tuple[str, Any]]:
        got = await _public(
            "payment.status_changed", {"payment_id": str(PAYMENT), "status": status}
        )
        return [(e.type, e.data.get("status")) for e in got]

    assert await types("PAID") == [("payment.paid", None)]
    for unpaid in ("FAILED", "USER_DROPPED", "EXPIRED", "CANCELLED"):
        assert await types(unpaid) == [("payment.failed", unpaid)]
    assert await types("ACTIVE") == []


async def test_a_low_balance_crossing_also_says_the_recharge_started() -> None:
    payload, kw = SAMPLES["wallet.low_balance"]
    low, requested = await _public("wallet.low_balance", payload, **kw)
    assert (low.type, requested.type) == ("wallet.low_balance", "auto_recharge.requested")
    assert requested.data["recharge_id"] == kw["correlation_id"]
    assert low.id != requested.id


async def test_ids_are_stable_for_one_message_and_a_bad_payload_is_refused() -> None:
    payload, _ = SAMPLES["refund.succeeded"]
    envelope = new_envelope("refund.succeeded", payload)
    first = await translate(envelope, _user_of, _payment_of)
    again = await translate(envelope, _user_of, _payment_of)
    assert [e.id for e in first] == [e.id for e in again]
    with pytest.raises(Unreadable, match="missing amount_paise"):
        await _public("refund.succeeded", {k: v for k, v in payload.items() if k != "amount_paise"})
    assert await _public("mandate.status_changed", {"mandate_id": "m"}) == []
