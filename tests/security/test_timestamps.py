"""One rule for every timestamp taken from outside (`security/timestamps.py`), and every
model that takes one from outside uses it."""

from __future__ import annotations

import importlib
import pkgutil
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import pytest
from pydantic import BaseModel, TypeAdapter, ValidationError

import commdesk_billing
from commdesk_billing.gateway import models as gateway
from commdesk_billing.gateway import payout_models
from commdesk_billing.security.text import StrictInput
from commdesk_billing.security.timestamps import (
    IST,
    OUTSIDE,
    CashfreeTime,
    Timestamp,
    in_window,
)

EDGES = ("0001-01-01T00:00:00+23:59", "9999-12-31T23:59:59-23:59")
OUTSIDE_VALUES = (
    *EDGES,
    "1999-12-31T23:59:59.999999Z",
    "2100-01-01T00:00:00Z",
    "2099-12-31T23:00:00-01:00",  # 2100-01-01T00:00Z
    "2000-01-01T05:29:59+05:30",  # 1999-12-31T23:59:59Z
)
strict = TypeAdapter(Timestamp)
lenient = TypeAdapter(CashfreeTime)


@pytest.mark.parametrize("value", OUTSIDE_VALUES)
def test_a_time_outside_the_window_is_refused(value: str) -> None:
    with pytest.raises(ValidationError) as caught:
        strict.validate_python(value)
    [error] = caught.value.errors()
    assert error["msg"] == f"Value error, {OUTSIDE}"


@pytest.mark.parametrize(
    ("value", "utc"),
    [
        ("2000-01-01T00:00:00Z", datetime(2000, 1, 1, tzinfo=UTC)),
        ("2099-12-31T23:59:59.999999Z", datetime(2099, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
        ("2100-01-01T00:30:00+01:00", datetime(2099, 12, 31, 23, 30, tzinfo=UTC)),
        ("1999-12-31T20:00:00-05:00", datetime(2000, 1, 1, 1, tzinfo=UTC)),
        ("2030-01-01T05:30:00+05:30", datetime(2030, 1, 1, tzinfo=UTC)),
    ],
)
def test_a_time_inside_is_handed_on_in_utc(value: str, utc: datetime) -> None:
    got = strict.validate_python(value)
    assert (got, got.utcoffset()) == (utc, timedelta(0))
    assert got.tzinfo is UTC


def test_a_time_without_an_offset_is_refused() -> None:
    with pytest.raises(ValidationError):
        strict.validate_python("2030-01-01T00:00:00")
    with pytest.raises(ValueError, match="needs a UTC offset"):
        in_window(datetime(2030, 1, 1))  # noqa: DTZ001 (the point of the test)


def test_the_edges_would_overflow_without_the_rule() -> None:
    # Why the rule exists: what asyncpg does to send a timestamptz.
    for value in EDGES:
        parsed = datetime.fromisoformat(value)
        with pytest.raises(OverflowError):
            parsed.astimezone(UTC)
        with pytest.raises(ValueError, match="lie in"):
            in_window(parsed)


@pytest.mark.parametrize("value", [*OUTSIDE_VALUES, "not a time", "", 10**20])
def test_a_cashfree_time_outside_the_rule_is_unknown(value: Any) -> None:
    assert lenient.validate_python(value) is None


def test_a_cashfree_time_is_utc_and_one_without_offset_is_indian() -> None:
    assert lenient.validate_python("2026-11-26T12:00:00+05:30") == datetime(
        2026, 11, 26, 6, 30, tzinfo=UTC
    )
    naive = lenient.validate_python("2026-11-26T12:00:00")
    assert naive == datetime(2026, 11, 26, 12, tzinfo=IST)
    assert naive is not None and naive.tzinfo is UTC
    assert lenient.validate_python(None) is None


def test_cashfree_answers_with_absurd_times_still_parse() -> None:
    payment = gateway.Payment.model_validate(
        {
            "cf_payment_id": 1,
            "payment_status": "SUCCESS",
            "payment_amount": 300.0,
            "payment_time": EDGES[0],
            "payment_completion_time": EDGES[1],
        }
    )
    assert (payment.payment_time, payment.payment_completion_time) == (None, None)
    refund = gateway.Refund.model_validate(
        {
            "refund_id": "rf_1",
            "refund_amount": "30.00",
            "refund_status": "SUCCESS",
            "created_at": EDGES[1],
            "processed_at": "2026-11-26T12:00:00+05:30",
        }
    )
    assert refund.created_at is None
    assert refund.processed_at == datetime(2026, 11, 26, 6, 30, tzinfo=UTC)


def _every_model() -> list[type[BaseModel]]:
    for info in pkgutil.walk_packages(commdesk_billing.__path__, "commdesk_billing."):
        if ".sandbox" not in info.name:
            importlib.import_module(info.name)
    seen: list[type[BaseModel]] = []
    stack: list[type[BaseModel]] = [BaseModel]
    while stack:
        for sub in stack.pop().__subclasses__():
            if sub.__module__.startswith("commdesk_billing.") and ".sandbox" not in sub.__module__:
                seen.append(sub)
            stack.append(sub)
    return seen


def _time_fields(model: type[BaseModel]) -> list[tuple[str, Any]]:
    return [
        (
            name,
            Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation,
        )
        for name, field in model.model_fields.items()
        if "datetime" in repr(field.annotation).lower()
    ]


def test_every_outside_model_bounds_its_times() -> None:
    """Every model that parses outside input (our API and queues: StrictInput and the
    envelope; Cashfree's answers and webhooks: the gateway's PG and Payouts models) has no
    time field that takes year 0 or year 10000: ours refuse them, Cashfree's make them
    unknown."""
    checked: list[str] = []
    for model in _every_model():
        ours = issubclass(model, StrictInput)
        cashfree = model.__module__ in (gateway.__name__, payout_models.__name__)
        if not (ours or cashfree):
            continue  # answers we write, documents we stored: not outside input
        for name, annotation in _time_fields(model):
            adapter = TypeAdapter(annotation)
            for value in EDGES:
                if ours:
                    with pytest.raises(ValidationError):
                        adapter.validate_python(value)
                else:
                    assert adapter.validate_python(value) is None, f"{model.__name__}.{name}"
            checked.append(f"{model.__name__}.{name}")
    assert sorted(checked) == [
        "AttributionRequest.valid_from",
        "AttributionRequest.valid_until",
        "Beneficiary.added_on",
        "CreditPayload.expires_at",
        "Envelope.occurred_at",
        "GrantRequest.expires_at",
        "MandateRequest.valid_until",
        "Order.created_at",
        "Order.order_expiry_time",
        "Payment.payment_completion_time",
        "Payment.payment_time",
        "PriceVersionIn.effective_from",
        "ProcessPayload.order_expires_at",
        "Refund.created_at",
        "Refund.processed_at",
        "Transfer.added_on",
        "Transfer.updated_on",
        "TransferWebhook.event_time",
        "UsageEventIn.occurred_at",
    ]
