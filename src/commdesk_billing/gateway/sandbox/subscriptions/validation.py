"""Subscriptions' request checks (cashfree.md §12.2, §12.3, §12.5) with Cashfree's answers:
400 `invalid_request_error`, code `<field>_missing` / `<field>_invalid` (or one of the codes
Cashfree lists for subscriptions: `subscription_id_missing`, `plan_id_missing`,
`payment_id_missing`, `invalid_payment_type`), message `<path> : <what is wrong>`."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any

from commdesk_billing.gateway.sandbox.errors import CashfreeError, bad_request
from commdesk_billing.gateway.sandbox.validation import (
    _invalid,
    _missing,
    _text,
    amount_paise,
    body_object,
)
from commdesk_billing.gateway.sandbox.wire import IST

_PLAN_ID = re.compile(r"^[A-Za-z0-9._-]+$")
_SUBSCRIPTION_ID = re.compile(r"^[A-Za-z0-9_. -]+$")
_PAYMENT_ID = re.compile(r"^[A-Za-z0-9_.-]+$")
_PHONE = re.compile(r"^(\d{10}|\+\d{8,15})$")
PLAN_TYPES = ("PERIODIC", "ON_DEMAND")
INTERVAL_TYPES = ("DAY", "WEEK", "MONTH", "YEAR")
METHODS = ("enach", "pnach", "upi", "card")


def _object(obj: dict[str, Any], key: str, *, required: bool = False) -> dict[str, Any] | None:
    value = obj.get(key)
    if value is None:
        if required:
            raise _missing(key)
        return None
    if not isinstance(value, dict):
        raise _invalid(key, "should be an object")
    return value


def _int(obj: dict[str, Any], key: str, path: str, lo: int, hi: int) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise _invalid(path, f"should be a whole number from {lo} to {hi}")
    return value


def parse_time(value: Any, path: str) -> datetime:
    """ISO 8601 with a `T` or a space; without an offset it is Indian time (§12.3)."""
    if not isinstance(value, str) or not 10 <= len(value) <= 40:
        raise _invalid(path, "should be an ISO 8601 timestamp")
    try:
        moment = datetime.fromisoformat(value.replace(" ", "T", 1))
    except ValueError as exc:
        raise _invalid(path, "should be an ISO 8601 timestamp") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=IST)
    if not 2000 <= moment.year < 2200:
        raise _invalid(path, "is out of range")
    return moment


def _opt_time(obj: dict[str, Any], key: str, path: str) -> datetime | None:
    value = obj.get(key)
    return None if value is None else parse_time(value, path)


@dataclass(frozen=True, slots=True)
class PlanFields:
    plan_id: str | None
    plan_name: str
    plan_type: str
    max_amount_paise: int
    recurring_amount_paise: int | None
    max_cycles: int | None
    intervals: int | None
    interval_type: str | None
    note: str | None
    currency: str


def _plan_fields(obj: dict[str, Any], prefix: str, amount_key: str) -> PlanFields:
    name = _text(obj, "plan_name", prefix + "plan_name", 1, 40, required=True)
    plan_type = obj.get("plan_type")
    if plan_type is None:
        raise _missing(prefix + "plan_type")
    if plan_type not in PLAN_TYPES:
        raise _invalid(prefix + "plan_type", "should be PERIODIC or ON_DEMAND")
    currency = obj.get("plan_currency", "INR")
    if currency != "INR":
        raise _invalid(prefix + "plan_currency", "only INR is supported")
    max_paise = amount_paise(obj, "plan_max_amount", 100)
    recurring: int | None = None
    intervals = _int(obj, "plan_intervals", prefix + "plan_intervals", 1, 1000)
    interval_type = obj.get("plan_interval_type")
    if interval_type is not None and interval_type not in INTERVAL_TYPES:
        raise _invalid(prefix + "plan_interval_type", "should be DAY, WEEK, MONTH or YEAR")
    if plan_type == "PERIODIC":
        recurring = amount_paise(obj, amount_key, 100)
        if recurring > max_paise:
            raise _invalid(prefix + amount_key, "should not exceed plan_max_amount")
        if interval_type is None:
            raise _missing(prefix + "plan_interval_type")
        intervals = intervals or 1
    assert name is not None
    return PlanFields(
        plan_id=None,
        plan_name=name,
        plan_type=plan_type,
        max_amount_paise=max_paise,
        recurring_amount_paise=recurring,
        max_cycles=_int(obj, "plan_max_cycles", prefix + "plan_max_cycles", 0, 100_000),
        intervals=intervals,
        interval_type=interval_type,
        note=_text(obj, "plan_note", prefix + "plan_note", 1, 500),
        currency="INR",
    )


def new_plan(body: Any) -> PlanFields:
    obj = body_object(body)
    plan_id = obj.get("plan_id")
    if plan_id is None:
        raise bad_request("plan_id_missing", "plan_id : is missing in the request")
    if not isinstance(plan_id, str) or not 1 <= len(plan_id) <= 40 or not _PLAN_ID.match(plan_id):
        raise _invalid("plan_id", "should be 1 to 40 letters, digits, '.', '-' or '_'")
    fields = _plan_fields(obj, "", "plan_recurring_amount")
    return replace(fields, plan_id=plan_id)


@dataclass(frozen=True, slots=True)
class NewSubscription:
    subscription_id: str
    customer: dict[str, Any]
    plan_id: str | None
    plan: PlanFields | None
    auth_amount_paise: int | None
    auth_amount_refund: bool
    methods: list[str]
    meta: dict[str, Any]
    session_expiry: datetime | None
    expiry_time: datetime | None
    first_charge_time: datetime | None
    tags: dict[str, str] | None
    note: str | None


def _customer(raw: dict[str, Any]) -> dict[str, Any]:
    p = "customer_details."
    email = _text(raw, "customer_email", p + "customer_email", 3, 100, required=True)
    if email is not None and "@" not in email:
        raise _invalid(p + "customer_email", "should be an email address")
    phone = raw.get("customer_phone")
    if phone is None:
        raise _missing(p + "customer_phone")
    if not isinstance(phone, str) or not _PHONE.match(phone):
        raise bad_request(
            "phone_invalid",
            p + "customer_phone : should be 10 digits, or '+' and the international number",
        )
    out: dict[str, Any] = {
        "customer_name": _text(raw, "customer_name", p + "customer_name", 1, 100),
        "customer_email": email,
        "customer_phone": phone,
        "customer_bank_account_holder_name": _text(
            raw,
            "customer_bank_account_holder_name",
            p + "customer_bank_account_holder_name",
            1,
            40,
        ),
        "customer_bank_account_number": _text(
            raw, "customer_bank_account_number", p + "customer_bank_account_number", 1, 35
        ),
        "customer_bank_ifsc": _text(raw, "customer_bank_ifsc", p + "customer_bank_ifsc", 1, 20),
    }
    kind = raw.get("customer_bank_account_type")
    if kind is not None and kind not in ("SAVINGS", "CURRENT"):
        raise _invalid(p + "customer_bank_account_type", "should be SAVINGS or CURRENT")
    out["customer_bank_account_type"] = kind
    return out


def _tags(raw: Any) -> dict[str, str] | None:
    if raw is None:
        return None
    if (
        not isinstance(raw, dict)
        or len(raw) > 10
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in raw.items())
    ):
        raise _invalid("subscription_tags", "should be at most 10 string pairs")
    note = raw.get("psp_note")
    if note is not None and not 1 <= len(note) <= 255:
        raise _invalid("subscription_tags.psp_note", "should be 1 to 255 characters")
    return dict(raw)


def new_subscription(body: Any) -> NewSubscription:
    obj = body_object(body)
    sub_id = obj.get("subscription_id")
    if sub_id is None:
        raise bad_request("subscription_id_missing", "subscription_id : is missing in the request")
    if (
        not isinstance(sub_id, str)
        or not 1 <= len(sub_id) <= 250
        or not _SUBSCRIPTION_ID.match(sub_id)
    ):
        raise _invalid(
            "subscription_id", "should be 1 to 250 letters, digits, spaces, '_', '.' or '-'"
        )
    customer = _object(obj, "customer_details", required=True)
    plan = _object(obj, "plan_details", required=True)
    assert customer is not None and plan is not None
    plan_id = plan.get("plan_id")
    inline: PlanFields | None = None
    if plan_id is not None:
        if not isinstance(plan_id, str) or not plan_id:
            raise _invalid("plan_details.plan_id", "should be a plan's id")
    elif "plan_name" in plan or "plan_type" in plan:
        inline = _plan_fields(plan, "plan_details.", "plan_amount")
    else:
        raise bad_request("plan_id_missing", "plan_details.plan_id : is missing in the request")
    auth = _object(obj, "authorization_details") or {}
    auth_paise = None
    if auth.get("authorization_amount") is not None:
        auth_paise = amount_paise(auth, "authorization_amount", 0)
    refund = auth.get("authorization_amount_refund", False)
    if not isinstance(refund, bool):
        raise _invalid("authorization_details.authorization_amount_refund", "should be a boolean")
    methods = auth.get("payment_methods")
    if methods is None:
        methods = ["upi", "card"]
    if not isinstance(methods, list) or not methods or any(m not in METHODS for m in methods):
        raise _invalid(
            "authorization_details.payment_methods", "should be a list of enach, pnach, upi, card"
        )
    meta = _object(obj, "subscription_meta") or {}
    return_url = _text(meta, "return_url", "subscription_meta.return_url", 1, 500)
    if return_url is not None and not return_url.startswith(("http://", "https://")):
        raise _invalid("subscription_meta.return_url", "should be an http(s) URL")
    channels = meta.get("notification_channel")
    if channels is not None and (
        not isinstance(channels, list) or any(c not in ("EMAIL", "SMS") for c in channels)
    ):
        raise _invalid("subscription_meta.notification_channel", "should be a list of EMAIL, SMS")
    return NewSubscription(
        subscription_id=sub_id,
        customer=_customer(customer),
        plan_id=plan_id,
        plan=inline,
        auth_amount_paise=auth_paise,
        auth_amount_refund=refund,
        methods=list(dict.fromkeys(methods)),
        meta={"return_url": return_url, "notification_channel": channels},
        session_expiry=_opt_time(meta, "session_id_expiry", "subscription_meta.session_id_expiry"),
        expiry_time=_opt_time(obj, "subscription_expiry_time", "subscription_expiry_time"),
        first_charge_time=_opt_time(
            obj, "subscription_first_charge_time", "subscription_first_charge_time"
        ),
        tags=_tags(obj.get("subscription_tags")),
        note=_text(obj, "subscription_note", "subscription_note", 1, 500),
    )


@dataclass(frozen=True, slots=True)
class NewPayment:
    subscription_id: str
    payment_id: str
    payment_type: str
    session_id: str | None
    amount_paise: int | None
    schedule_date: date | None
    remarks: str | None
    method: str | None  # AUTH: the key of `payment_method`, when the merchant chose one


def _payment_id(obj: dict[str, Any], key: str = "payment_id") -> str:
    value = obj.get(key)
    if value is None:
        raise bad_request("payment_id_missing", f"{key} : is missing in the request")
    if not isinstance(value, str) or not 1 <= len(value) <= 200 or not _PAYMENT_ID.match(value):
        raise _invalid(key, "should be 1 to 200 letters, digits, '.', '-' or '_'")
    return value


def subscription_ref(obj: dict[str, Any]) -> str:
    value = obj.get("subscription_id")
    if value is None:
        raise bad_request("subscription_id_missing", "subscription_id : is missing in the request")
    if not isinstance(value, str) or not value:
        raise _invalid("subscription_id", "should be a subscription's id")
    return value


def new_payment(body: Any) -> NewPayment:
    obj = body_object(body)
    sub_id = subscription_ref(obj)
    payment_id = _payment_id(obj)
    kind = obj.get("payment_type")
    if kind not in ("AUTH", "CHARGE"):
        raise bad_request("invalid_payment_type", "payment_type : should be AUTH or CHARGE")
    remarks = _text(obj, "payment_remarks", "payment_remarks", 1, 255)
    if kind == "AUTH":
        session = _text(
            obj, "subscription_session_id", "subscription_session_id", 1, 200, required=True
        )
        amount = None
        if obj.get("payment_amount") is not None:
            amount = amount_paise(obj, "payment_amount", 0)
        method = None
        raw = obj.get("payment_method")
        if raw is not None:
            if not isinstance(raw, dict) or len(raw) != 1 or next(iter(raw)) not in METHODS:
                raise _invalid("payment_method", "should be one of upi, card, enach, pnach")
            method = next(iter(raw))
        return NewPayment(sub_id, payment_id, kind, session, amount, None, remarks, method)
    amount = amount_paise(obj, "payment_amount", 100)
    when = obj.get("payment_schedule_date")
    # Only the date counts (§12.5): taken in Indian time.
    schedule = None if when is None else parse_time(when, "payment_schedule_date").astimezone(IST)
    return NewPayment(
        sub_id,
        payment_id,
        kind,
        None,
        amount,
        schedule.date() if schedule else None,
        remarks,
        None,
    )


@dataclass(frozen=True, slots=True)
class Manage:
    action: str
    next_scheduled_time: datetime | None
    plan_id: str | None


def manage(body: Any, subscription_id: str, actions: tuple[str, ...]) -> Manage:
    obj = body_object(body)
    given = obj.get("subscription_id")
    if given is not None and given != subscription_id:
        raise _invalid("subscription_id", "does not match the path")
    action = obj.get("action")
    if action is None:
        raise _missing("action")
    if action not in actions:
        raise _invalid("action", "should be one of " + ", ".join(actions))
    details = _object(obj, "action_details") or {}
    plan_id = details.get("plan_id")
    return Manage(
        action=action,
        next_scheduled_time=_opt_time(
            details, "next_scheduled_time", "action_details.next_scheduled_time"
        ),
        plan_id=plan_id if isinstance(plan_id, str) else None,
    )


def payment_ref(body: Any, payment_id: str) -> None:
    obj = body_object(body)
    given = obj.get("payment_id")
    if given is not None and given != payment_id:
        raise _invalid("payment_id", "does not match the path")


def refuse(code: str, message: str, status: int = 400) -> CashfreeError:
    return CashfreeError(status, code, message)


_REFUND_ID = re.compile(r"^[A-Za-z0-9_-]+$")
REFUND_SPEEDS = ("STANDARD", "INSTANT")


@dataclass(frozen=True, slots=True)
class NewRefund:
    payment_id: str | None
    cf_payment_id: str | None
    refund_id: str
    amount_paise: int
    note: str | None
    speed: str


def new_refund(body: Any, subscription_id: str) -> NewRefund:
    """`POST /subscriptions/{id}/refunds` (§12.5): `payment_id` (ours) or `cf_payment_id`
    names the charge; `refund_id` is required here (it is how the refund is fetched)."""
    obj = body_object(body)
    given = obj.get("subscription_id")
    if given is not None and given != subscription_id:
        raise _invalid("subscription_id", "does not match the path")
    payment_id = None if obj.get("payment_id") is None else _payment_id(obj)
    cf_payment_id = obj.get("cf_payment_id")
    if cf_payment_id is not None and (
        not isinstance(cf_payment_id, str | int)
        or isinstance(cf_payment_id, bool)
        or not str(cf_payment_id).isdigit()
    ):
        raise _invalid("cf_payment_id", "should be a Cashfree payment id")
    if payment_id is None and cf_payment_id is None:
        raise bad_request("payment_id_missing", "payment_id : is missing in the request")
    refund_id = _text(obj, "refund_id", "refund_id", 3, 40, required=True)
    assert refund_id is not None
    if not _REFUND_ID.match(refund_id):
        raise _invalid("refund_id", "only letters, digits, '_' and '-' are allowed")
    try:
        paise = amount_paise(obj, "refund_amount", 1)
    except CashfreeError as exc:
        # Cashfree's one code for every bad refund amount, as on PG refunds (§4.2).
        raise bad_request("refund_amount_invalid", exc.message) from exc
    note = obj.get("refund_note")
    if note is not None and (not isinstance(note, str) or not 3 <= len(note) <= 100):
        raise bad_request("refund_note_invalid", "refund_note : should be 3 to 100 characters")
    speed = obj.get("refund_speed") or "STANDARD"
    if speed not in REFUND_SPEEDS:
        raise bad_request("refund_speed_invalid", "refund_speed : should be STANDARD or INSTANT")
    return NewRefund(
        payment_id=payment_id,
        cf_payment_id=None if cf_payment_id is None else str(cf_payment_id),
        refund_id=refund_id,
        amount_paise=paise,
        note=note,
        speed=speed,
    )
