"""The hosted checkout: plain HTML pages (no scripts, no external assets) that a person, a
browser test or a plain HTTP client can drive.

`GET /pg/view/checkout?payment_session_id=...` shows the order and a form; posting the form
runs Order Pay with the test instrument that gives the chosen outcome and shows the result,
with a link to the order's `return_url`.
"""

from __future__ import annotations

from html import escape
from urllib.parse import quote

from commdesk_billing.gateway.amounts import rupees_text
from commdesk_billing.gateway.sandbox.store import Order, Payment

CHECKOUT_PATH = "/pg/view/checkout"

METHODS = {
    "upi": "UPI",
    "card": "Card",
    "netbanking": "Netbanking",
    "app": "Wallet (PhonePe, Paytm, Amazon Pay…)",
}
OUTCOMES = {"success": "Success", "failure": "Failure", "user_dropped": "User dropped"}


def checkout_url(base_url: str, payment_session_id: str) -> str:
    """The hosted checkout page of an order. `base_url` is the sandbox's root URL or its
    `/pg` base (what a Cashfree client is configured with); both work."""
    root = base_url.rstrip("/")
    if root.endswith("/pg"):
        root = root[: -len("/pg")]
    return f"{root}{CHECKOUT_PATH}?payment_session_id={quote(payment_session_id, safe='')}"


def return_link(order: Order) -> str | None:
    url = order.meta.get("return_url")
    return url.replace("{order_id}", quote(order.order_id, safe="")) if url else None


def _page(title: str, body: str, *, refresh_s: int | None = None) -> str:
    refresh = f'<meta http-equiv="refresh" content="{refresh_s}">' if refresh_s else ""
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title>{refresh}"
        "<style>body{font-family:sans-serif;max-width:32rem;margin:2rem auto;}"
        "fieldset{margin:1rem 0;}dt{font-weight:bold;}</style></head>"
        f"<body><h1>{escape(title)}</h1>{body}</body></html>\n"
    )


def _order_facts(order: Order) -> str:
    return (
        "<dl>"
        f'<dt>Order</dt><dd id="order-id">{escape(order.order_id)}</dd>'
        f'<dt>Amount</dt><dd id="order-amount">{escape(order.currency)} '
        f"{rupees_text(order.amount_paise)}</dd>"
        f'<dt>Status</dt><dd id="order-status">{escape(order.status.value)}</dd>'
        "</dl>"
    )


def _radios(name: str, options: dict[str, str], checked: str) -> str:
    return "".join(
        f'<label><input type="radio" name="{name}" id="{name.split("_")[-1]}-{value}" '
        f'value="{value}"{" checked" if value == checked else ""}> {escape(label)}</label><br>'
        for value, label in options.items()
    )


def checkout_page(order: Order, error: str | None = None) -> str:
    facts = _order_facts(order)
    problem = f'<p id="error" role="alert">{escape(error)}</p>' if error else ""
    if order.status.value != "ACTIVE":
        return _page(
            "Cashfree sandbox checkout",
            facts + problem + '<p id="not-payable">This order cannot be paid.</p>' + _back(order),
        )
    form = (
        f'<form id="checkout-form" method="post" action="{CHECKOUT_PATH}">'
        '<input type="hidden" name="payment_session_id" id="payment_session_id" '
        f'value="{escape(order.payment_session_id)}">'
        f"<fieldset><legend>Pay with</legend>{_radios('payment_method', METHODS, 'upi')}"
        "</fieldset>"
        f"<fieldset><legend>Outcome</legend>{_radios('outcome', OUTCOMES, 'success')}</fieldset>"
        '<button type="submit" id="pay-button">Pay</button></form>'
    )
    return _page("Cashfree sandbox checkout", facts + problem + form)


def _back(order: Order) -> str:
    link = return_link(order)
    if link is None:
        return ""
    return f'<p><a id="return-link" href="{escape(link)}">Back to the merchant</a></p>'


def result_page(order: Order, payment: Payment) -> str:
    pending = payment.status.value in ("PENDING", "NOT_ATTEMPTED")
    body = (
        _order_facts(order) + "<dl>"
        f'<dt>Payment</dt><dd id="cf-payment-id">{escape(payment.cf_payment_id)}</dd>'
        f'<dt>Payment status</dt><dd id="payment-status">{escape(payment.status.value)}</dd>'
        f'<dt>Message</dt><dd id="payment-message">{escape(payment.message)}</dd>'
        "</dl>" + _back(order)
    )
    # An open payment (card or netbanking settling) refreshes itself until it ends.
    return _page("Cashfree sandbox payment", body, refresh_s=1 if pending else None)


def error_page(message: str) -> str:
    return _page("Cashfree sandbox checkout", f'<p id="error" role="alert">{escape(message)}</p>')
