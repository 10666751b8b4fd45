"""The hosted mandate authorisation page (see `subscriptions/page.py` for its fields)."""

from __future__ import annotations

from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from commdesk_billing.gateway.sandbox.errors import CashfreeError
from commdesk_billing.gateway.sandbox.service import Sandbox
from commdesk_billing.gateway.sandbox.subscriptions.page import (
    AUTHORIZE_PATH,
    OUTCOMES,
    authorize_page,
    error_page,
    result_page,
)
from commdesk_billing.gateway.sandbox.subscriptions.service import SubscriptionSandbox


async def show(request: Request) -> Response:
    subs = _subs(request)
    try:
        sub = subs.for_session(request.query_params.get("subscription_session_id"))
    except CashfreeError as exc:
        return HTMLResponse(error_page(exc.message), 404)
    payment_id = request.query_params.get("payment_id")
    return HTMLResponse(authorize_page(sub, subs.offered(sub), payment_id))


async def submit(request: Request) -> Response:
    subs = _subs(request)
    # Parsed by hand, as the PG checkout does: no multipart dependency for three fields.
    raw = (await request.body()).decode("utf-8", "replace")
    form = {k: v[0] for k, v in parse_qs(raw).items()}
    try:
        sub = subs.for_session(form.get("subscription_session_id"))
    except CashfreeError as exc:
        return HTMLResponse(error_page(exc.message), 404)
    method, outcome = form.get("payment_method", ""), form.get("outcome", "")
    payment_id = form.get("payment_id")
    if method not in subs.offered(sub) or outcome not in OUTCOMES:
        message = "Pick how to authorise (" + ", ".join(subs.offered(sub)) + ") and an outcome."
        return HTMLResponse(authorize_page(sub, subs.offered(sub), payment_id, message), 400)
    try:
        payment = subs.authorize(sub, method, outcome, payment_id)
    except CashfreeError as exc:
        return HTMLResponse(authorize_page(sub, subs.offered(sub), payment_id, exc.message), 400)
    return HTMLResponse(result_page(sub, payment))


def _subs(request: Request) -> SubscriptionSandbox:
    sandbox: Sandbox = request.app.state.sandbox
    return sandbox.subscriptions


routes = [
    Route(AUTHORIZE_PATH, show, methods=["GET"]),
    Route(AUTHORIZE_PATH, submit, methods=["POST"]),
]
