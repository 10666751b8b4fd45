"""Payouts V2 and bank-account verification requests, checked with Cashfree's answers.

Field rules are cashfree.md §6.2's (lengths, character sets, the IFSC's shape); refusals use
the PG side's convention (400, `<field>_missing` / `<field>_invalid`, `<path> : <reason>`),
which gives the codes §13.3 lists (`beneficiary_id_invalid`, `bank_ifsc_invalid`,
`bank_account_number_invalid`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from commdesk_billing.gateway.sandbox.errors import bad_request
from commdesk_billing.gateway.sandbox.payouts.store import Instrument
from commdesk_billing.gateway.sandbox.validation import (
    _invalid,
    _missing,
    _text,
    amount_paise,
    body_object,
)

_BENEFICIARY_ID = re.compile(r"^[A-Za-z0-9_|.]+$")
_NAME = re.compile(r"^[A-Za-z ]+$")
_TRANSFER_ID = re.compile(r"^[A-Za-z0-9_]+$")
_REMARKS = re.compile(r"^[A-Za-z0-9 ]*$")
_ACCOUNT = re.compile(r"^[A-Za-z0-9]+$")
_IFSC = re.compile(r"^[A-Z]{4}0[A-Z0-9]{6}$")
_VPA = re.compile(r"^[A-Za-z0-9._-]{2,256}@[A-Za-z0-9]{2,64}$")
_IFSC_SHAPE = "should look like ABCD0123456"
_PHONE = re.compile(r"^[0-9]{8,12}$")
_COUNTRY_CODE = re.compile(r"^\+[0-9]{1,3}$")
_POSTAL_CODE = re.compile(r"^[0-9]{6}$")

MODES = ("banktransfer", "imps", "neft", "rtgs", "upi")
# In Cashfree's list (§6.2) but not simulated here: card tokens and wallets.
UNSUPPORTED_MODES = ("paytm", "amazonpay", "card")


def _matching(
    obj: dict[str, Any],
    key: str,
    path: str,
    pattern: re.Pattern[str],
    lo: int,
    hi: int,
    why: str,
    *,
    required: bool = False,
) -> str | None:
    value = _text(obj, key, path, lo, hi, required=required)
    if value is not None and not pattern.match(value):
        raise _invalid(path, why)
    return value


def _object(obj: dict[str, Any], key: str, *, required: bool = False) -> dict[str, Any] | None:
    value = obj.get(key)
    if value is None:
        if required:
            raise _missing(key)
        return None
    if not isinstance(value, dict):
        raise _invalid(key, "should be an object")
    return value


def instrument(raw: dict[str, Any] | None, path: str, account_len: tuple[int, int]) -> Instrument:
    if raw is None:
        raise _missing(path)
    p = path + "."
    lo, hi = account_len
    account = _matching(
        raw, "bank_account_number", p + "bank_account_number", _ACCOUNT, lo, hi, "letters or digits"
    )
    ifsc = _matching(raw, "bank_ifsc", p + "bank_ifsc", _IFSC, 11, 11, _IFSC_SHAPE)
    vpa = _matching(raw, "vpa", p + "vpa", _VPA, 3, 330, "should be a UPI id like name@bank")
    if account is not None and ifsc is None:
        raise _missing(p + "bank_ifsc")
    if ifsc is not None and account is None:
        raise _missing(p + "bank_account_number")
    if account is None and vpa is None:
        raise _missing(path)
    return Instrument(account, ifsc, vpa)


def contact(raw: dict[str, Any] | None) -> dict[str, Any]:
    if raw is None:
        return {}
    p = "beneficiary_contact_details."
    email = _text(raw, "beneficiary_email", p + "beneficiary_email", 3, 200)
    if email is not None and "@" not in email:
        raise _invalid(p + "beneficiary_email", "should be an email address")
    return {
        "beneficiary_email": email,
        "beneficiary_phone": _matching(
            raw, "beneficiary_phone", p + "beneficiary_phone", _PHONE, 8, 12, "8 to 12 digits"
        ),
        "beneficiary_country_code": _matching(
            raw,
            "beneficiary_country_code",
            p + "beneficiary_country_code",
            _COUNTRY_CODE,
            2,
            4,
            "'+' and 1 to 3 digits",
        ),
        "beneficiary_address": _text(raw, "beneficiary_address", p + "beneficiary_address", 1, 150),
        "beneficiary_city": _text(raw, "beneficiary_city", p + "beneficiary_city", 1, 50),
        "beneficiary_state": _text(raw, "beneficiary_state", p + "beneficiary_state", 1, 50),
        "beneficiary_postal_code": _matching(
            raw,
            "beneficiary_postal_code",
            p + "beneficiary_postal_code",
            _POSTAL_CODE,
            6,
            6,
            "6 digits",
        ),
    }


def _beneficiary_id(obj: dict[str, Any], path: str, *, required: bool) -> str | None:
    return _matching(
        obj,
        "beneficiary_id",
        path,
        _BENEFICIARY_ID,
        1,
        50,
        "only letters, digits, '_', '|' and '.' are allowed",
        required=required,
    )


def _name(obj: dict[str, Any], path: str) -> str:
    name = _matching(
        obj, "beneficiary_name", path, _NAME, 1, 100, "only letters and spaces", required=True
    )
    assert name is not None
    return name


@dataclass(frozen=True, slots=True)
class NewBeneficiary:
    beneficiary_id: str
    name: str
    instrument: Instrument
    contact: dict[str, Any]


def new_beneficiary(body: Any) -> NewBeneficiary:
    obj = body_object(body)
    bene_id = _beneficiary_id(obj, "beneficiary_id", required=True)
    assert bene_id is not None
    return NewBeneficiary(
        beneficiary_id=bene_id,
        name=_name(obj, "beneficiary_name"),
        instrument=instrument(
            _object(obj, "beneficiary_instrument_details"),
            "beneficiary_instrument_details",
            (4, 25),
        ),
        contact=contact(_object(obj, "beneficiary_contact_details")),
    )


@dataclass(frozen=True, slots=True)
class NewTransfer:
    transfer_id: str
    amount_paise: int
    currency: str
    mode: str
    beneficiary_id: str | None
    # Given inline instead of a beneficiary_id: name and instrument.
    inline_name: str | None
    inline_instrument: Instrument | None
    remarks: str | None
    fundsource_id: str | None


def new_transfer(body: Any) -> NewTransfer:
    obj = body_object(body)
    transfer_id = _matching(
        obj,
        "transfer_id",
        "transfer_id",
        _TRANSFER_ID,
        1,
        40,
        "only letters, digits and '_' are allowed",
        required=True,
    )
    assert transfer_id is not None
    currency = obj.get("transfer_currency") or "INR"
    if currency != "INR":
        raise _invalid("transfer_currency", "only INR is available")
    mode = obj.get("transfer_mode") or "banktransfer"
    if mode in UNSUPPORTED_MODES:
        raise _invalid("transfer_mode", f"{mode} is not available in this sandbox")
    if mode not in MODES:
        raise _invalid("transfer_mode", "should be one of " + ", ".join(MODES))
    details = _object(obj, "beneficiary_details", required=True)
    assert details is not None
    bene_id = _beneficiary_id(details, "beneficiary_details.beneficiary_id", required=False)
    inline_name = inline = None
    if bene_id is None:
        if details.get("beneficiary_name") is None:
            raise _missing("beneficiary_details.beneficiary_id")
        inline_name = _name(details, "beneficiary_details.beneficiary_name")
        inline = instrument(
            _object(details, "beneficiary_instrument_details"),
            "beneficiary_details.beneficiary_instrument_details",
            (9, 18),
        )
    return NewTransfer(
        transfer_id=transfer_id,
        amount_paise=amount_paise(obj, "transfer_amount", 100),
        currency=currency,
        mode=mode,
        beneficiary_id=bene_id,
        inline_name=inline_name,
        inline_instrument=inline,
        remarks=_matching(
            obj, "transfer_remarks", "transfer_remarks", _REMARKS, 0, 70, "letters, digits, spaces"
        ),
        fundsource_id=_text(obj, "fundsource_id", "fundsource_id", 1, 50),
    )


@dataclass(frozen=True, slots=True)
class NewVerification:
    bank_account: str
    ifsc: str
    name: str | None
    phone: str | None
    user_id: str | None


def new_verification(body: Any) -> NewVerification:
    obj = body_object(body)
    account = _matching(
        obj, "bank_account", "bank_account", _ACCOUNT, 9, 18, "letters or digits", required=True
    )
    ifsc = _matching(obj, "ifsc", "ifsc", _IFSC, 11, 11, _IFSC_SHAPE, required=True)
    assert account is not None and ifsc is not None
    name = _text(obj, "name", "name", 1, 100)
    phone = obj.get("phone")
    if phone is not None and (not isinstance(phone, str) or not re.fullmatch(r"[0-9]{10}", phone)):
        raise bad_request("phone_invalid", "phone : should be 10 digits")
    return NewVerification(
        bank_account=account,
        ifsc=ifsc,
        name=name,
        phone=phone,
        user_id=_text(obj, "user_id", "user_id", 1, 50),
    )
