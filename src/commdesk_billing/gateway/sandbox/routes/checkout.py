"""Hosted checkout pages (see `checkout.py` for the form's fields)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from commdesk_billing.gateway.sandbox.checkout import (
    CHECKOUT_PATH,
    METHODS,
    OUTCOMES,
    checkout_page,
    error_page,
    result_page,
)
from commdesk_billing.gateway.sandbox.errors import CashfreeError
from commdesk_billing.gateway.sandbox.instruments import (
    CARD_DECLINED,
    DECLINED,
    FAILING_CARD,
    FAILURE_VPA,
    SUCCESS_CARD,
    SUCCESS_VPA,
    TEST_BANK_CODE,
    USER_DROPPED,
    USER_DROPPED_VPA,
)
from commdesk_billing.gateway.sandbox.service import Sandbox
from commdesk_billing.gateway.sandbox.store import Failure, PaymentStatus

Forced = tuple[PaymentStatus, Failure | None] | None


def _instrument(method: str, outcome: str) -> tuple[dict[str, Any], Forced]:
    """The Order Pay `payment_method` (a real test instrument where one exists) for a choice.

    Cards, netbanking and app wallets have no test instrument for every outcome, so the
    choice is forced on the same Order Pay path: it is what the person did on the "bank
    page".
    """
    if method == "upi":
        vpa = {"success": SUCCESS_VPA, "failure": FAILURE_VPA, "user_dropped": USER_DROPPED_VPA}
        return {"upi": {"channel": "collect", "upi_id": vpa[outcome]}}, None
    if method == "card":
        card = {
            "channel": "link",
            "card_number": FAILING_CARD if outcome == "failure" else SUCCESS_CARD,
            "card_holder_name": "Sandbox Tester",
            "card_expiry_mm": "03",
            "card_expiry_yy": "28",
            "card_cvv": "123",
        }
        forced: Forced = (PaymentStatus.FAILED, CARD_DECLINED) if outcome == "failure" else None
        if outcome == "user_dropped":
            forced = (PaymentStatus.USER_DROPPED, USER_DROPPED)
        return {"card": card}, forced
    forced = {
        "success": None,
        "failure": (PaymentStatus.FAILED, DECLINED),
        "user_dropped": (PaymentStatus.USER_DROPPED, USER_DROPPED),
    }[outcome]
    if method == "app":
        return {"app": {"channel": "link", "provider": "phonepe", "phone": "9876543210"}}, forced
    return {"netbanking": {"channel": "link", "netbanking_bank_code": TEST_BANK_CODE}}, forced


def _html(text: str, status: int = 200) -> Response:
    return HTMLResponse(text, status)


async def show(request: Request) -> Response:
    sandbox: Sandbox = request.app.state.sandbox
    try:
        order = sandbox.order_for_session(request.query_params.get("payment_session_id"))
    except CashfreeError as exc:
        return _html(error_page(exc.message), 404)
    return _html(checkout_page(order))


async def submit(request: Request) -> Response:
    sandbox: Sandbox = request.app.state.sandbox
    # Parsed by hand: Starlette's form parser needs python-multipart for nothing more than this.
    form = {k: v[0] for k, v in parse_qs((await request.body()).decode("utf-8", "replace")).items()}
    try:
        order = sandbox.order_for_session(form.get("payment_session_id"))
    except CashfreeError as exc:
        return _html(error_page(exc.message), 404)
    method, outcome = form.get("payment_method", ""), form.get("outcome", "")
    if method not in METHODS or outcome not in OUTCOMES:
        message = "Pick a payment method (upi, card, netbanking) and an outcome."
        return _html(checkout_page(order, message), 400)
    payment_method, forced = _instrument(method, outcome)
    body = {"payment_session_id": order.payment_session_id, "payment_method": payment_method}
    try:
        started = sandbox.pay(body, forced=forced, settle_now=True)
    except CashfreeError as exc:
        return _html(checkout_page(order, exc.message), 400)
    return _html(result_page(started.order, started.payment))


async def payment_page(request: Request) -> Response:
    sandbox: Sandbox = request.app.state.sandbox
    payment = sandbox.store.payments.get(request.path_params["cf_payment_id"])
    if payment is None:
        return _html(error_page("payment not found"), 404)
    return _html(result_page(sandbox.order(payment.order_id), payment))


routes = [
    Route(CHECKOUT_PATH, show, methods=["GET"]),
    Route(CHECKOUT_PATH, submit, methods=["POST"]),
    Route("/pg/view/payments/{cf_payment_id}", payment_page, methods=["GET"]),
]
