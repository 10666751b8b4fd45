"""The hosted mandate authorisation page: plain HTML (no scripts, no external assets) that a
person, a browser test or a plain HTTP client can drive.

`GET /pg/view/subscriptions/authorize?subscription_session_id=…` shows the mandate (plan, max
amount, validity) and a form: UPI AutoPay or card, and what the payer does (approve, decline,
or drop: leave without answering). Posting the form does it and shows the result.
"""

from __future__ import annotations

from html import escape
from urllib.parse import quote

from commdesk_billing.gateway.amounts import rupees_text
from commdesk_billing.gateway.sandbox.subscriptions.store import Subscription, SubsPayment
from commdesk_billing.gateway.sandbox.wire import ist_text

AUTHORIZE_PATH = "/pg/view/subscriptions/authorize"
METHODS = {"upi": "UPI AutoPay", "card": "Card (standing instruction)"}
OUTCOMES = {"approve": "Approve", "decline": "Decline", "drop": "Leave without answering"}


def authorize_url(base_url: str, session_id: str, payment_id: str | None = None) -> str:
    """The hosted page of a subscription. `base_url`: the sandbox's root or its `/pg` base."""
    root = base_url.rstrip("/")
    if root.endswith("/pg"):
        root = root[: -len("/pg")]
    url = f"{root}{AUTHORIZE_PATH}?subscription_session_id={quote(session_id, safe='')}"
    return url + (f"&payment_id={quote(payment_id, safe='')}" if payment_id else "")


def _page(title: str, body: str) -> str:
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title>"
        "<style>body{font-family:sans-serif;max-width:32rem;margin:2rem auto;}"
        "fieldset{margin:1rem 0;}dt{font-weight:bold;}</style></head>"
        f"<body><h1>{escape(title)}</h1>{body}</body></html>\n"
    )


def _facts(sub: Subscription) -> str:
    plan = sub.plan
    return (
        "<dl>"
        f'<dt>Subscription</dt><dd id="subscription-id">{escape(sub.subscription_id)}</dd>'
        f'<dt>Plan</dt><dd id="plan-name">{escape(plan.plan_name)} ({escape(plan.plan_type)})</dd>'
        f'<dt>Maximum per debit</dt><dd id="max-amount">INR {rupees_text(plan.max_amount_paise)}'
        "</dd>"
        f'<dt>Authorisation amount</dt><dd id="auth-amount">INR '
        f"{rupees_text(sub.auth_amount_paise)}</dd>"
        f'<dt>Valid until</dt><dd id="valid-until">{escape(ist_text(sub.expiry_time))}</dd>'
        f'<dt>Status</dt><dd id="subscription-status">{escape(sub.status)}</dd>'
        "</dl>"
    )


def _radios(name: str, options: dict[str, str], checked: str) -> str:
    return "".join(
        f'<label><input type="radio" name="{name}" id="{name}-{value}" value="{value}"'
        f"{' checked' if value == checked else ''}> {escape(label)}</label><br>"
        for value, label in options.items()
    )


def authorize_page(
    sub: Subscription, offered: list[str], payment_id: str | None, error: str | None = None
) -> str:
    problem = f'<p id="error" role="alert">{escape(error)}</p>' if error else ""
    if sub.status != "INITIALIZED" or not offered:
        why = "This mandate cannot be authorised here." + (
            "" if offered else " (only UPI AutoPay and cards are simulated)"
        )
        return _page(
            "Cashfree sandbox mandate",
            _facts(sub) + problem + f'<p id="not-authorizable">{escape(why)}</p>' + _back(sub),
        )
    hidden_payment = (
        f'<input type="hidden" name="payment_id" value="{escape(payment_id)}">'
        if payment_id
        else ""
    )
    form = (
        f'<form id="authorize-form" method="post" action="{AUTHORIZE_PATH}">'
        '<input type="hidden" name="subscription_session_id" id="subscription_session_id" '
        f'value="{escape(sub.session_id)}">{hidden_payment}'
        "<fieldset><legend>Authorise with</legend>"
        f"{_radios('payment_method', {m: METHODS[m] for m in offered}, offered[0])}</fieldset>"
        f"<fieldset><legend>Payer</legend>{_radios('outcome', OUTCOMES, 'approve')}</fieldset>"
        '<button type="submit" id="authorize-button">Continue</button></form>'
    )
    return _page("Cashfree sandbox mandate", _facts(sub) + problem + form)


def result_page(sub: Subscription, payment: SubsPayment) -> str:
    body = (
        _facts(sub) + "<dl>"
        f'<dt>Authorisation</dt><dd id="payment-id">{escape(payment.payment_id)}</dd>'
        f'<dt>Authorisation status</dt><dd id="payment-status">{escape(payment.status)}</dd>'
        f'<dt>Mandate reference</dt><dd id="authorization-reference">'
        f"{escape(sub.auth_reference or '')}</dd>"
        "</dl>" + _back(sub)
    )
    return _page("Cashfree sandbox mandate", body)


def _back(sub: Subscription) -> str:
    url = sub.meta.get("return_url")
    if not url:
        return ""
    return f'<p><a id="return-link" href="{escape(url)}">Back to the merchant</a></p>'


def error_page(message: str) -> str:
    return _page("Cashfree sandbox mandate", f'<p id="error" role="alert">{escape(message)}</p>')
