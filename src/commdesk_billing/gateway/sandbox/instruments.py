"""Cashfree's sandbox test instruments (cashfree.md §3.2) and what each one does here.

An instrument decides a payment's planned outcome. `None` means nobody will answer: the payment
stays open until `/pg/simulate` (or, for UPI collect, the collect request's expiry) ends it.
The error codes of the failing instruments are the sandbox's own choice (README).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from commdesk_billing.gateway.sandbox.errors import bad_request
from commdesk_billing.gateway.sandbox.store import Failure, PaymentStatus

SUCCESS_CARD = "4706131211212123"
FAILING_CARD = "4012001037141112"
TEST_BANK_CODE = 3333
TEST_BANK_NAME = "TESTR"
SUCCESS_VPA = "testsuccess@gocash"
FAILURE_VPA = "testfailure@gocash"
USER_DROPPED_VPA = "testuserdropped@gocash"
# App wallets (`payment_method.app`, cashfree.md §2.5): Cashfree's providers. The payment's
# `payment_group` is `wallet` (§3.1). This phone number is the sandbox's failing wallet
# account (the sandbox's own choice); any other 10-digit number pays.
APP_PROVIDERS = frozenset(
    {"gpay", "phonepe", "ola", "paytm", "amazon", "airtel", "freecharge", "mobikwik", "jio"}
)
FAILING_WALLET_PHONE = "9999999990"


def _fail(code: str, description: str, reason: str, source: str, message: str) -> Failure:
    return Failure(code, description, reason, source, message)


DECLINED = _fail(
    "TRANSACTION_DECLINED",
    "transaction is rejected at the remitter bank end. Please reach out to issuer bank",
    "bank_rejected",
    "bank",
    "01::REJECTED",
)
USER_DROPPED = _fail(
    "USER_DROPPED",
    "user dropped and did not complete the payment",
    "user_dropped",
    "customer",
    "User dropped and did not complete the payment",
)
EXPIRED_COLLECT = _fail(
    "UPI_COLLECT_EXPIRED",
    "customer did not approve the collect request in time",
    "request_expired",
    "customer",
    "Collect request expired",
)

# VPA -> (status, failure) for the listed test VPAs.
VPA_OUTCOMES: dict[str, tuple[PaymentStatus, Failure | None]] = {
    SUCCESS_VPA: (PaymentStatus.SUCCESS, None),
    FAILURE_VPA: (PaymentStatus.FAILED, DECLINED),
    USER_DROPPED_VPA: (PaymentStatus.USER_DROPPED, USER_DROPPED),
    "testinvalid@gocash": (
        PaymentStatus.FAILED,
        _fail("INVALID_VPA", "the UPI id is invalid", "invalid_vpa", "customer", "INVALID VPA"),
    ),
    "testdeclineuser@gocash": (
        PaymentStatus.FAILED,
        _fail(
            "TRANSACTION_DECLINED_BY_USER",
            "customer declined the collect request",
            "user_declined",
            "customer",
            "Declined by user",
        ),
    ),
    "testexpired@gocash": (PaymentStatus.FAILED, EXPIRED_COLLECT),
    "testtimeoutbank@gocash": (
        PaymentStatus.FAILED,
        _fail("BANK_TIMEOUT", "the bank did not answer in time", "bank_timeout", "bank", "TIMEOUT"),
    ),
    "testinsufficientfunds@gocash": (
        PaymentStatus.FAILED,
        _fail(
            "INSUFFICIENT_FUNDS",
            "the customer's account does not have enough balance",
            "insufficient_funds",
            "customer",
            "INSUFFICIENT FUNDS",
        ),
    ),
    "testbankdeclined@gocash": (PaymentStatus.FAILED, DECLINED),
    "testriskflagged@gocash": (
        PaymentStatus.FAILED,
        _fail(
            "RISK_THRESHOLD_EXCEEDED",
            "the payment was blocked by risk checks",
            "risk_rejected",
            "cashfree",
            "Blocked by risk checks",
        ),
    ),
    "testnetworkerror@gocash": (
        PaymentStatus.FAILED,
        _fail(
            "NETWORK_ERROR", "network error at the bank", "network_error", "bank", "NETWORK ERROR"
        ),
    ),
    "testinvalidpin@gocash": (
        PaymentStatus.FAILED,
        _fail("INVALID_PIN", "the UPI PIN was wrong", "invalid_pin", "customer", "INCORRECT PIN"),
    ),
}

CARD_DECLINED = _fail(
    "CARD_DECLINED",
    "the card issuer declined the payment",
    "card_declined",
    "bank",
    "Card declined by issuer",
)


@dataclass(frozen=True, slots=True)
class Attempt:
    """What Order Pay starts: how it looks, and where it is heading."""

    group: str
    channel: str
    method: dict[str, Any]
    start: PaymentStatus  # PENDING, or NOT_ATTEMPTED for UPI intent/QR
    outcome: tuple[PaymentStatus, Failure | None] | None  # None: waits for /pg/simulate
    action: str  # PayOrderEntity.action: custom | link


def _luhn_ok(number: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _upi(spec: dict[str, Any]) -> Attempt:
    channel = spec.get("channel")
    if channel not in ("collect", "link", "qrcode", "podQrCode"):
        raise bad_request(
            "channel_missing", "payment_method.upi.channel : should be one of collect, link, qrcode"
        )
    if channel != "collect":
        # Intent and QR wait for the customer's app: only /pg/simulate moves them.
        method = {"upi": {"channel": channel, "upi_id": None}}
        return Attempt("upi", channel, method, PaymentStatus.NOT_ATTEMPTED, None, "link")
    vpa = spec.get("upi_id")
    if not isinstance(vpa, str) or "@" not in vpa or not 3 <= len(vpa) <= 100:
        raise bad_request("upi_id_invalid", "payment_method.upi.upi_id : a valid VPA is required")
    method = {
        "upi": {
            "channel": "collect",
            "upi_id": vpa,
            "upi_payer_ifsc": None,
            "upi_payer_account_number": None,
        }
    }
    return Attempt("upi", "collect", method, PaymentStatus.PENDING, VPA_OUTCOMES.get(vpa), "custom")


def _card(spec: dict[str, Any]) -> Attempt:
    number = str(spec.get("card_number") or "").replace(" ", "")
    if not (number.isdigit() and 12 <= len(number) <= 19 and _luhn_ok(number)):
        raise bad_request(
            "card_number_invalid", "payment_method.card.card_number : invalid card number"
        )
    if not spec.get("card_cvv"):
        raise bad_request(
            "card_cvv_missing", "payment_method.card.card_cvv : is missing in the request"
        )
    channel = spec.get("channel") or "link"
    if channel not in ("link", "post"):
        raise bad_request("channel_missing", "payment_method.card.channel : should be link or post")
    outcome: tuple[PaymentStatus, Failure | None]
    if number == SUCCESS_CARD:
        outcome = (PaymentStatus.SUCCESS, None)
    elif number == FAILING_CARD:
        outcome = (PaymentStatus.FAILED, CARD_DECLINED)
    else:
        outcome = (
            PaymentStatus.FAILED,
            _fail(
                "CARD_NOT_SUPPORTED",
                "only the sandbox's test cards work here",
                "card_not_supported",
                "cashfree",
                "Card not supported",
            ),
        )
    method = {
        "card": {
            "channel": channel,
            "card_number": f"{number[:6]}XXXXXX{number[-4:]}",
            "card_network": "visa" if number.startswith("4") else "mastercard",
            "card_type": "credit_card",
            "card_sub_type": "R",
            "card_country": "IN",
            "card_bank_name": "TEST Bank",
            "card_network_reference_id": None,
            "instrument_id": None,
        }
    }
    return Attempt("credit_card", channel, method, PaymentStatus.PENDING, outcome, "link")


def _netbanking(spec: dict[str, Any]) -> Attempt:
    code, name = spec.get("netbanking_bank_code"), spec.get("netbanking_bank_name")
    if str(code) != str(TEST_BANK_CODE) and name != TEST_BANK_NAME:
        raise bad_request(
            "netbanking_bank_code_invalid",
            f"payment_method.netbanking.netbanking_bank_code : only the TEST bank "
            f"({TEST_BANK_CODE} / {TEST_BANK_NAME}) exists in the sandbox",
        )
    method = {
        "netbanking": {
            "channel": "link",
            # An int: the SDK's model refuses a string bank code (cashfree.md §3.1).
            "netbanking_bank_code": TEST_BANK_CODE,
            "netbanking_bank_name": "TEST Bank",
            "netbanking_ifsc": None,
            "netbanking_account_number": None,
        }
    }
    return Attempt(
        "net_banking", "link", method, PaymentStatus.PENDING, (PaymentStatus.SUCCESS, None), "link"
    )


def _app(spec: dict[str, Any]) -> Attempt:
    provider = spec.get("provider")
    if provider not in APP_PROVIDERS:
        raise bad_request(
            "provider_invalid",
            "payment_method.app.provider : should be one of " + ", ".join(sorted(APP_PROVIDERS)),
        )
    phone = str(spec.get("phone") or "")
    if not (phone.isdigit() and len(phone) == 10):
        raise bad_request(
            "phone_invalid", "payment_method.app.phone : a 10-digit mobile number is required"
        )
    channel = spec.get("channel") or "link"
    if channel != "link":
        raise bad_request("channel_missing", "payment_method.app.channel : should be link")
    outcome: tuple[PaymentStatus, Failure | None] = (
        (PaymentStatus.FAILED, DECLINED)
        if phone == FAILING_WALLET_PHONE
        else (PaymentStatus.SUCCESS, None)
    )
    method = {"app": {"channel": "link", "provider": provider, "phone": phone}}
    return Attempt("wallet", "link", method, PaymentStatus.PENDING, outcome, "link")


def resolve(payment_method: object) -> Attempt:
    """Order Pay's `payment_method` -> the attempt it starts; 400 when it is malformed."""
    if not isinstance(payment_method, dict) or len(payment_method) != 1:
        raise bad_request(
            "payment_method_invalid",
            "payment_method : exactly one of upi, card, netbanking, app is required",
        )
    ((kind, spec),) = payment_method.items()
    if not isinstance(spec, dict):
        raise bad_request("payment_method_invalid", f"payment_method.{kind} : must be an object")
    if kind == "upi":
        return _upi(spec)
    if kind == "card":
        return _card(spec)
    if kind == "netbanking":
        return _netbanking(spec)
    if kind == "app":
        return _app(spec)
    raise bad_request(
        "payment_method_invalid",
        f"payment_method : {kind} is not available in the sandbox (upi, card, netbanking, app are)",
    )
