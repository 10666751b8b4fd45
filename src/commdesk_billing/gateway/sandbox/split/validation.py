"""Request checks for Easy Split: vendors (`CreateVendorRequest` / `UpdateVendorRequest`,
cashfree.md §6.1), `order_splits` (§14.1) and `refund_splits` (§4.1, §14.3).

The split refusals use the texts Cashfree's split-after-payment examples give (§14.2, code
`api_request_failed`); the same validator is assumed on order create (the doc's inference).
Texts the doc does not give are the sandbox's own (README, UNCONFIRMED).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from commdesk_billing.gateway.sandbox.errors import CashfreeError, bad_request
from commdesk_billing.gateway.sandbox.split.store import Split
from commdesk_billing.gateway.sandbox.validation import amount_paise, body_object

SPLIT_CODE = "api_request_failed"
BOTH = "Invalid Request: Both Amount and percentage are present"
TOO_MUCH = "Total split amount can not be greater than transaction amount / eligible split balance"
BAD_PERCENT = "Invalid vendor split percentage"
NO_VENDOR = "vendor does not exist"

_VENDOR_ID = re.compile(r"^[A-Za-z0-9_]{1,50}$")
_NAME = re.compile(r"^[A-Za-z0-9 ./&-]{1,100}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_IFSC = re.compile(r"^[A-Z]{4}0[A-Z0-9]{6}$")
_ACCOUNT = re.compile(r"^[0-9]{9,18}$")
_VPA = re.compile(r"^[A-Za-z0-9._-]{2,256}@[A-Za-z]{2,64}$")
_PAN = re.compile(r"^[A-Z]{5}[0-9]{4}[A-Z]$")
_GST = re.compile(r"^[0-9]{2}[A-Z0-9]{13}$")
STATUSES = ("ACTIVE", "BLOCKED", "DELETED")
KYC_FIELDS = (
    "account_type",
    "business_type",
    "uidai",
    "gst",
    "cin",
    "pan",
    "passport_number",
    "driving_license",
    "voter_id",
)


def split_error(message: str) -> CashfreeError:
    return bad_request(SPLIT_CODE, message)


def _invalid(path: str, why: str) -> CashfreeError:
    return bad_request(f"{path.rsplit('.', 1)[-1]}_invalid", f"{path} : {why}")


def _missing(path: str) -> CashfreeError:
    return bad_request(f"{path.rsplit('.', 1)[-1]}_missing", f"{path} : is missing in the request")


def _str(obj: dict[str, Any], key: str, path: str, pattern: re.Pattern[str], why: str) -> str:
    value = obj.get(key)
    if value is None:
        raise _missing(path)
    if not isinstance(value, str) or not pattern.match(value):
        raise _invalid(path, why)
    return value


def _phone(value: Any) -> str:
    if value is None:
        raise _missing("phone")
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise bad_request("phone_invalid", "phone : should be a string of digits")
    digits = value.removeprefix("+91") if value.startswith("+91") else value
    if not (digits.isascii() and digits.isdigit() and 8 <= len(digits) <= 12):
        raise bad_request("phone_invalid", "phone : should be 8 to 12 digits (after +91)")
    return value


def _bank(raw: Any) -> dict[str, str]:
    if not isinstance(raw, dict):
        raise _invalid("bank", "should be an object {account_number, account_holder, ifsc}")
    return {
        "account_number": _str(
            raw, "account_number", "bank.account_number", _ACCOUNT, "should be 9 to 18 digits"
        ),
        "account_holder": _str(
            raw, "account_holder", "bank.account_holder", _NAME, "should be a name"
        ),
        "ifsc": _str(raw, "ifsc", "bank.ifsc", _IFSC, "should be an IFSC like HDFC0000001"),
    }


def _upi(raw: Any) -> dict[str, str]:
    if not isinstance(raw, dict):
        raise _invalid("upi", "should be an object {vpa, account_holder}")
    return {
        "vpa": _str(raw, "vpa", "upi.vpa", _VPA, "should be a VPA like name@bank"),
        "account_holder": _str(raw, "account_holder", "upi.account_holder", _NAME, "a name"),
    }


def _kyc(raw: Any) -> dict[str, Any]:
    if raw is None:
        raise _missing("kyc_details")
    if not isinstance(raw, dict):
        raise _invalid("kyc_details", "should be an object")
    out: dict[str, Any] = {}
    for key in KYC_FIELDS:
        value = raw.get(key)
        if value is not None and (not isinstance(value, str) or not 1 <= len(value) <= 50):
            raise _invalid(f"kyc_details.{key}", "should be a string of 1 to 50 characters")
        out[key] = value
    for key in ("account_type", "business_type"):
        if out[key] is None:
            raise _missing(f"kyc_details.{key}")
    if out["pan"] is not None and not _PAN.match(out["pan"]):
        raise _invalid("kyc_details.pan", "should be a PAN like ABCPV1234D")
    if out["gst"] is not None and not _GST.match(out["gst"]):
        raise _invalid("kyc_details.gst", "should be a 15-character GSTIN")
    return out


def _flag(obj: dict[str, Any], key: str) -> bool | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, bool):
        raise _invalid(key, "should be true or false")
    return value


def _schedule(obj: dict[str, Any]) -> int | None:
    value = obj.get("schedule_option")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 99:
        raise _invalid("schedule_option", "should be a settlement cycle id (a number)")
    return value


@dataclass(frozen=True, slots=True)
class VendorFields:
    """What a create or an update carries; None: not given (an update keeps the old value)."""

    vendor_id: str | None
    status: str | None
    name: str | None
    email: str | None
    phone: str | None
    bank: dict[str, str] | None
    upi: dict[str, str] | None
    kyc: dict[str, Any] | None
    verify_account: bool | None
    dashboard_access: bool | None
    schedule_option: int | None


def _status(obj: dict[str, Any], *, required: bool) -> str | None:
    value = obj.get("status")
    if value is None:
        if required:
            raise _missing("status")
        return None
    if value not in STATUSES:
        raise _invalid("status", "should be one of " + ", ".join(STATUSES))
    return str(value)


def _fields(obj: dict[str, Any], *, create: bool) -> VendorFields:
    def opt(key: str, pattern: re.Pattern[str], why: str) -> str | None:
        if obj.get(key) is None and not create:
            return None
        return _str(obj, key, key, pattern, why)

    bank = _bank(obj["bank"]) if obj.get("bank") is not None else None
    upi = _upi(obj["upi"]) if obj.get("upi") is not None else None
    if create and bank is None and upi is None:
        raise bad_request("bank_missing", "bank : or upi is needed to settle to the vendor")
    phone = obj.get("phone")
    return VendorFields(
        vendor_id=(
            _str(obj, "vendor_id", "vendor_id", _VENDOR_ID, "only letters, digits and '_'")
            if create
            else None
        ),
        status=_status(obj, required=create),
        name=opt("name", _NAME, "letters, digits, spaces and . / - & only"),
        email=opt("email", _EMAIL, "should be an email address"),
        phone=_phone(phone) if create or phone is not None else None,
        bank=bank,
        upi=upi,
        kyc=_kyc(obj.get("kyc_details")) if create or "kyc_details" in obj else None,
        verify_account=_flag(obj, "verify_account"),
        dashboard_access=_flag(obj, "dashboard_access"),
        schedule_option=_schedule(obj),
    )


def new_vendor(body: Any) -> VendorFields:
    return _fields(body_object(body), create=True)


def vendor_update(body: Any) -> VendorFields:
    return _fields(body_object(body), create=False)


def _percentage(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise split_error(BAD_PERCENT)
    pct = Decimal(value)
    if not Decimal(0) < pct <= Decimal(100) or pct != pct.quantize(Decimal("0.01")):
        raise split_error(BAD_PERCENT)
    return pct


def order_splits(raw: Any, order_paise: int, *, path: str = "order_splits") -> list[Split]:
    """The split of an order of `order_paise`, its shapes and sums checked; the vendors are
    checked by the service (it holds them)."""
    if raw is None:
        return []
    if not isinstance(raw, list) or len(raw) > 100:
        raise _invalid(path, "should be a list of {vendor_id, amount | percentage, tags}")
    splits: list[Split] = []
    for i, item in enumerate(raw):
        where = f"{path}[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("vendor_id"), str):
            raise _invalid(where, "should be an object with a vendor_id")
        if item.get("amount") is not None and item.get("percentage") is not None:
            raise split_error(BOTH)
        tags = item.get("tags")
        if tags is not None and not isinstance(tags, dict):
            raise _invalid(where + ".tags", "should be an object")
        if item.get("percentage") is not None:
            splits.append(Split(item["vendor_id"], None, _percentage(item["percentage"]), tags))
        elif item.get("amount") is not None:
            try:
                paise = amount_paise(item, "amount", 1)
            except CashfreeError as exc:
                raise split_error("Invalid vendor split amount") from exc
            splits.append(Split(item["vendor_id"], paise, None, tags))
        else:
            raise split_error("Invalid Request: amount or percentage is required")
    vendors = [s.vendor_id for s in splits]
    if len(set(vendors)) != len(vendors):
        raise split_error("Invalid Request: a vendor_id appears more than once")
    if sum(s.percentage for s in splits if s.percentage is not None) > 100:
        raise split_error(BAD_PERCENT)
    if sum(s.share(order_paise) for s in splits) > order_paise:
        raise split_error(TOO_MUCH)
    return splits


def refund_splits(raw: Any) -> list[tuple[str, int]] | None:
    """`[{vendor_id, amount, tags}]` as (vendor_id, paise); None when not given."""
    if raw is None:
        return None
    if not isinstance(raw, list) or not raw or len(raw) > 100:
        raise _invalid("refund_splits", "should be a non-empty list of {vendor_id, amount}")
    out: list[tuple[str, int]] = []
    for i, item in enumerate(raw):
        where = f"refund_splits[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("vendor_id"), str):
            raise _invalid(where, "should be an object with a vendor_id")
        try:
            paise = amount_paise(item, "amount", 0)
        except CashfreeError as exc:
            raise bad_request("refund_splits_invalid", f"{where}.{exc.message}") from exc
        out.append((item["vendor_id"], paise))
    if len({v for v, _ in out}) != len(out):
        raise bad_request("refund_splits_invalid", "refund_splits : a vendor_id appears twice")
    return out
