"""Request checks with Cashfree's answers: 400 `invalid_request_error`, code `<field>_invalid`
or `<field>_missing`, message `<path> : <what is wrong>`.

Written by hand instead of with pydantic so that each refusal carries the code Cashfree would
use, and so that amounts are read as Decimal straight from the JSON text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from commdesk_billing.gateway.amounts import AmountError, to_paise
from commdesk_billing.gateway.sandbox.errors import CashfreeError, bad_request

_ID = re.compile(r"^[A-Za-z0-9_-]+$")
_PHONE = re.compile(r"^(\d{10}|\+\d{8,15})$")


def _missing(path: str) -> CashfreeError:
    return bad_request(f"{path.rsplit('.', 1)[-1]}_missing", f"{path} : is missing in the request")


def _invalid(path: str, why: str) -> CashfreeError:
    return bad_request(f"{path.rsplit('.', 1)[-1]}_invalid", f"{path} : {why}")


def body_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise bad_request("request_invalid", "request body : must be a JSON object")
    return body


def _text(
    obj: dict[str, Any], key: str, path: str, lo: int, hi: int, *, required: bool = False
) -> str | None:
    value = obj.get(key)
    if value is None:
        if required:
            raise _missing(path)
        return None
    if not isinstance(value, str) or not lo <= len(value) <= hi:
        raise _invalid(path, f"should be a string of {lo} to {hi} characters")
    return value


def _ident(
    obj: dict[str, Any], key: str, path: str, lo: int, hi: int, *, required: bool
) -> str | None:
    value = _text(obj, key, path, lo, hi, required=required)
    if value is not None and not _ID.match(value):
        raise _invalid(path, "only letters, digits, '_' and '-' are allowed")
    return value


def amount_paise(obj: dict[str, Any], key: str, minimum_paise: int) -> int:
    value = obj.get(key)
    if value is None:
        raise _missing(key)
    # JSON numbers only: a bool is an int to Python, a string is not an amount on this API.
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise _invalid(key, "should be a number")
    try:
        paise = to_paise(value)
    except AmountError as exc:
        raise _invalid(key, "should have at most two decimal places") from exc
    if paise < minimum_paise:
        raise _invalid(key, f"should be at least {Decimal(minimum_paise) / 100:.2f}")
    return paise


@dataclass(frozen=True, slots=True)
class NewOrder:
    order_id: str | None
    amount_paise: int
    currency: str
    customer: dict[str, Any]
    meta: dict[str, Any]
    expiry: datetime | None
    note: str | None
    tags: dict[str, str] | None
    splits: Any  # raw `order_splits`
    cart_details: dict[str, Any] | None


def _customer(raw: Any) -> dict[str, Any]:
    if raw is None:
        raise _missing("customer_details")
    if not isinstance(raw, dict):
        raise _invalid("customer_details", "should be an object")
    p = "customer_details."
    out: dict[str, Any] = {
        "customer_id": _ident(raw, "customer_id", p + "customer_id", 3, 50, required=True),
        "customer_email": _text(raw, "customer_email", p + "customer_email", 3, 100),
        "customer_name": _text(raw, "customer_name", p + "customer_name", 3, 100),
        "customer_bank_account_number": _text(
            raw, "customer_bank_account_number", p + "customer_bank_account_number", 3, 20
        ),
        "customer_bank_ifsc": _text(raw, "customer_bank_ifsc", p + "customer_bank_ifsc", 1, 20),
        "customer_uid": _text(raw, "customer_uid", p + "customer_uid", 1, 100),
    }
    phone = raw.get("customer_phone")
    if phone is None:
        raise _missing(p + "customer_phone")
    if not isinstance(phone, str) or not _PHONE.match(phone):
        raise bad_request(
            "phone_invalid",
            p + "customer_phone : should be 10 digits, or '+' and the international number",
        )
    out["customer_phone"] = phone
    email = out["customer_email"]
    if email is not None and "@" not in email:
        raise _invalid(p + "customer_email", "should be an email address")
    code = raw.get("customer_bank_code")
    if code is not None and (isinstance(code, bool) or not isinstance(code, int)):
        raise _invalid(p + "customer_bank_code", "should be a number")
    out["customer_bank_code"] = code
    return out


def _url(obj: dict[str, Any], key: str) -> str | None:
    value = _text(obj, key, "order_meta." + key, 1, 250)
    # Cashfree wants https for notify_url; the sandbox lets http through for local receivers.
    if value is not None and not value.startswith(("http://", "https://")):
        raise _invalid("order_meta." + key, "should be an http(s) URL")
    return value


def _meta(raw: Any) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise _invalid("order_meta", "should be an object")
    methods = raw.get("payment_methods")
    if methods is not None and not isinstance(methods, str):
        raise _invalid("order_meta.payment_methods", "should be a comma-separated string")
    return {
        "return_url": _url(raw, "return_url"),
        "notify_url": _url(raw, "notify_url"),
        "payment_methods": methods or None,
    }


def _tags(raw: Any) -> dict[str, str] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or len(raw) > 10:
        raise _invalid("order_tags", "should be an object of at most 10 string values")
    for key, value in raw.items():
        if not isinstance(value, str) or not 1 <= len(value) <= 255:
            raise _invalid(f"order_tags.{key}", "should be a string of 1 to 255 characters")
    return dict(raw)


def _expiry(raw: Any, now: datetime) -> datetime | None:
    if raw is None:
        return None
    try:
        when = datetime.fromisoformat(raw) if isinstance(raw, str) else None
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise _invalid("order_expiry_time", "should be an ISO-8601 time with an offset")
    if when <= now:
        raise _invalid("order_expiry_time", "should be in the future")
    return when


def new_order(body: Any, now: datetime) -> NewOrder:
    obj = body_object(body)
    currency = obj.get("order_currency")
    if currency is None:
        raise _missing("order_currency")
    if currency != "INR":
        raise _invalid("order_currency", "only INR is available in the sandbox")
    # Checked against the order amount and the vendors by the Easy Split side.
    splits = obj.get("order_splits")
    cart = obj.get("cart_details")
    if cart is not None and not isinstance(cart, dict):
        raise _invalid("cart_details", "should be an object")
    return NewOrder(
        order_id=_ident(obj, "order_id", "order_id", 3, 45, required=False),
        amount_paise=amount_paise(obj, "order_amount", 100),
        currency=currency,
        customer=_customer(obj.get("customer_details")),
        meta=_meta(obj.get("order_meta")),
        expiry=_expiry(obj.get("order_expiry_time"), now),
        note=_text(obj, "order_note", "order_note", 3, 200),
        tags=_tags(obj.get("order_tags")),
        splits=splits,
        cart_details=cart,
    )


@dataclass(frozen=True, slots=True)
class NewRefund:
    refund_id: str | None
    amount_paise: int
    note: str | None
    speed: str
    splits: Any  # raw `refund_splits`, checked by the Easy Split side


def new_refund(body: Any) -> NewRefund:
    obj = body_object(body)
    speed = obj.get("refund_speed") or "STANDARD"
    if speed not in ("STANDARD", "INSTANT"):
        raise bad_request("refund_speed_invalid", "refund_speed : should be STANDARD or INSTANT")
    note = obj.get("refund_note")
    if note is not None and (not isinstance(note, str) or not 3 <= len(note) <= 100):
        raise bad_request("refund_note_invalid", "refund_note : should be 3 to 100 characters")
    try:
        paise = amount_paise(obj, "refund_amount", 1)
    except CashfreeError as exc:
        # Cashfree's documented code for every bad refund amount (cashfree.md §4.2).
        raise bad_request("refund_amount_invalid", exc.message) from exc
    return NewRefund(
        refund_id=_ident(obj, "refund_id", "refund_id", 3, 40, required=False),
        amount_paise=paise,
        note=note,
        speed=speed,
        splits=obj.get("refund_splits"),
    )


SIMULATED_STATUSES = ("SUCCESS", "FAILED", "PENDING", "USER_DROPPED")


@dataclass(frozen=True, slots=True)
class NewSimulation:
    entity_id: str
    payment_status: str
    payment_error_code: str | None


def new_simulation(body: Any) -> NewSimulation:
    obj = body_object(body)
    entity = obj.get("entity")
    if entity is None:
        raise _missing("entity")
    if entity != "PAYMENTS":
        raise _invalid("entity", "only PAYMENTS and SUBS_PAYMENTS can be simulated here")
    entity_id = obj.get("entity_id")
    if isinstance(entity_id, int) and not isinstance(entity_id, bool):
        entity_id = str(entity_id)
    if not isinstance(entity_id, str) or not entity_id:
        raise _missing("entity_id")
    sim = obj.get("entity_simulation")
    if not isinstance(sim, dict):
        raise _missing("entity_simulation")
    status = sim.get("payment_status")
    if status not in SIMULATED_STATUSES:
        raise _invalid(
            "entity_simulation.payment_status", "should be one of " + ", ".join(SIMULATED_STATUSES)
        )
    code = sim.get("payment_error_code")
    if code is not None and not isinstance(code, str):
        raise _invalid("entity_simulation.payment_error_code", "should be a string")
    return NewSimulation(entity_id, status, code)
