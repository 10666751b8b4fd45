"""The console's routes (`/console/...`): HTML pages and url-encoded form posts. Not part of
the API's schema (`include_in_schema=False`), but every request still passes the API's
middlewares: security headers (the console's own CSP), hosts, CSRF (`security/csrf.py`: the
forms carry the token as a `csrf_token` field), rate limits, request hygiene.

Each page asks `web.viewer_of` who is signed in first; every action goes through the owning
module's service with the staff member's principal, so the same role rules, idempotency and
audit entries apply as through the API. Errors are drawn on the page, never a 500."""

from __future__ import annotations

import uuid
from typing import Any

import structlog
from fastapi import APIRouter, Request
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from starlette.responses import RedirectResponse, Response

from commdesk_billing.config import Settings
from commdesk_billing.console import forms, sessions, web
from commdesk_billing.console.throttle import SignInThrottle
from commdesk_billing.db.engine import in_transaction
from commdesk_billing.errors import DomainError, Forbidden
from commdesk_billing.modules.audit.operator import Acted, audited
from commdesk_billing.modules.fraud import auth as fraud_auth
from commdesk_billing.modules.fraud import reviews as fraud_reviews
from commdesk_billing.modules.payments import service as payments
from commdesk_billing.modules.payments.state import Status as PaymentStatus
from commdesk_billing.modules.paymentstory import timeline as story_timeline
from commdesk_billing.modules.paymentstory.reads import payment_story
from commdesk_billing.modules.refunds import requesting
from commdesk_billing.modules.refunds.schemas import RefundRequest
from commdesk_billing.modules.reviews import service as review_decisions
from commdesk_billing.modules.settlements import auth as settlement_auth
from commdesk_billing.modules.settlements import service as settlements
from commdesk_billing.modules.settlements.model import SettlementStatus
from commdesk_billing.modules.users import service as users
from commdesk_billing.queues import admin as queue_admin
from commdesk_billing.queues.topology import QUEUES
from commdesk_billing.security import origin
from commdesk_billing.security.csrf import csrf_token
from commdesk_billing.security.jwt import Role
from commdesk_billing.security.roles import MONEY_OPERATORS

log = structlog.get_logger(__name__)

router = APIRouter(prefix="/console", include_in_schema=False)

_PAYMENT_STATUSES = tuple(s.value for s in PaymentStatus)
_SETTLEMENT_STATUSES = tuple(s.value for s in SettlementStatus)


def _engine(request: Request) -> AsyncEngine:
    engine: AsyncEngine = request.app.state.engine
    return engine


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _not_found(request: Request, viewer: web.Viewer, what: str) -> Response:
    return web.render(request, "not_found.html", status=404, viewer=viewer, what=what)


# --- Sign-in and sign-out ------------------------------------------------------------


@router.get("/sign-in")
async def sign_in_page(request: Request) -> Response:
    response = web.render(request, "sign_in.html", email="", error=None)
    # A stale session's cookies would make this form's post need a CSRF token: drop them.
    web.clear_cookies(request, response)
    return response


def _throttle(request: Request) -> SignInThrottle:
    throttle: SignInThrottle | None = getattr(request.app.state, "console_sign_in", None)
    if throttle is None:
        throttle = SignInThrottle(_settings(request))
        request.app.state.console_sign_in = throttle
    return throttle


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    settings = _settings(request)

    def again(error: str, status: int, email: str = "") -> Response:
        return web.render(request, "sign_in.html", status=status, email=email, error=error)

    if not web.same_origin(request):
        return again("Sign in from the console's own page.", 403)
    if settings.csrf_secret is None:
        return web.render(request, "unavailable.html", status=503)
    try:
        fields = await forms.read_form(request)
        email = sessions.normalize_email(fields.get("email", ""))
        password = fields.get("password", "")
        if not 1 <= len(password) <= 1024:
            raise forms.FormError("password", "enter your password")
    except (forms.FormError, sessions.InvalidEmail) as exc:
        return again(str(exc), 422)
    here = origin.current()
    ip = here.ip if here else None
    decision = await _throttle(request).attempt(
        getattr(request.app.state, "redis", None), email, ip
    )
    if not decision.allowed:
        response = again(
            f"Too many sign-in attempts; try again in {decision.retry_after_s} s.", 429, email
        )
        response.headers["Retry-After"] = str(decision.retry_after_s)
        return response
    signed_in = await in_transaction(
        _engine(request),
        lambda conn: sessions.sign_in(
            conn,
            settings,
            email,
            password,
            ip=ip,
            user_agent=here.user_agent if here else None,
        ),
    )
    if signed_in is None:
        return again("That email and password do not match an active account.", 401, email)
    response = RedirectResponse("/console", status_code=303)
    web.set_cookie(request, response, "session", signed_in.token)
    secret = settings.csrf_secret.get_secret_value()
    web.set_cookie(request, response, "csrf", csrf_token(secret, signed_in.token))
    return response


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    # Any live session is ended here, whatever its role (a member's too: it has the button
    # on its 403 page); the CSRF guard has checked the post already.
    viewer = await web.viewer_of(request, staff_only=False)
    if isinstance(viewer, web.Viewer):
        signed_in = viewer.signed_in
        await in_transaction(_engine(request), lambda conn: sessions.sign_out(conn, signed_in))
    return web.to_sign_in(request)


# --- Home ------------------------------------------------------------------------------


@router.get("")
async def home(request: Request) -> Response:
    viewer = await web.viewer_of(request)
    if not isinstance(viewer, web.Viewer):
        return viewer

    async def counts(conn: AsyncConnection) -> dict[str, int]:
        held = await fraud_reviews.list_reviews(
            conn, status="pending", user_id=None, after=None, limit=100
        )
        review = await payments.search(conn, status=PaymentStatus.REVIEW.value, limit=100)
        return {"pending_reviews": len(held), "payments_in_review": len(review)}

    figures = await in_transaction(_engine(request), counts)
    return web.render(request, "home.html", viewer=viewer, figures=figures)


# --- Payments ----------------------------------------------------------------------------


@router.get("/payments")
async def payments_search(request: Request) -> Response:
    viewer = await web.viewer_of(request)
    if not isinstance(viewer, web.Viewer):
        return viewer
    q = request.query_params
    shown = {k: q.get(k, "")[:200] for k in ("order_id", "user", "status")}
    errors: dict[str, str] = {}
    order_id = shown["order_id"].strip() or None
    if order_id is not None and (len(order_id) > 50 or not order_id.isprintable()):
        errors["order_id"] = "an order id has at most 50 characters"
    status = shown["status"] or None
    if status is not None and status not in _PAYMENT_STATUSES:
        errors["status"] = "choose a status from the list"
    user = shown["user"].strip() or None
    if user is not None and (len(user) > 200 or not user.isprintable()):
        errors["user"] = "a user is a CommDesk user id or our user UUID (at most 200 characters)"
    searched = any(shown.values())
    found: list[Any] = []
    if searched and not errors:

        async def work(conn: AsyncConnection) -> list[Any]:
            user_id = None
            if user is not None:
                user_id = forms.parse_uuid(user) or await users.user_id_for(conn, user)
                if user_id is None:
                    return []
            return await payments.search(
                conn, order_id=order_id, user_id=user_id, status=status, limit=50
            )

        found = await in_transaction(_engine(request), work)
    return web.render(
        request,
        "payments.html",
        status=422 if errors else 200,
        viewer=viewer,
        shown=shown,
        errors=errors,
        searched=searched,
        found=found,
        statuses=_PAYMENT_STATUSES,
    )


async def _payment_page(
    request: Request,
    viewer: web.Viewer,
    payment_id: uuid.UUID,
    *,
    error: str | None = None,
    notice: str | None = None,
    form: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    told = await in_transaction(
        _engine(request),
        lambda conn: payment_story(conn, viewer.signed_in.principal, payment_id),
    )
    if told is None:
        return _not_found(request, viewer, f"payment {payment_id}")
    return web.render(
        request,
        "payment.html",
        status=status,
        viewer=viewer,
        story=told,
        timeline=story_timeline.timeline(told, staff=True),
        error=error,
        notice=notice,
        form=form or {"amount": "", "reason": ""},
        may_refund=viewer.signed_in.principal.role in MONEY_OPERATORS,
        refund_key=str(uuid.uuid4()),
    )


@router.get("/payments/{payment_id}")
async def payment_detail(request: Request, payment_id: str) -> Response:
    viewer = await web.viewer_of(request)
    if not isinstance(viewer, web.Viewer):
        return viewer
    parsed = forms.parse_uuid(payment_id)
    if parsed is None:
        return _not_found(request, viewer, "that payment")
    notice = "Refund requested." if request.query_params.get("refunded") == "1" else None
    return await _payment_page(request, viewer, parsed, notice=notice)


@router.post("/payments/{payment_id}/refunds")
async def refund(request: Request, payment_id: str) -> Response:
    """The API's refund (`requesting.request_refund`: same roles, same rules, the form's
    key as the Idempotency-Key), answered with the payment page."""
    viewer = await web.viewer_of(request)
    if not isinstance(viewer, web.Viewer):
        return viewer
    parsed = forms.parse_uuid(payment_id)
    if parsed is None:
        return _not_found(request, viewer, "that payment")
    fields: dict[str, str] = {}
    try:
        fields = await forms.read_form(request)
        amount = forms.rupees_to_paise(fields, "amount", label="The amount")
        reason = forms.text(fields, "reason", label="The reason", min_length=3, max_length=100)
        key = forms.idempotency_key(fields)
        if amount is not None and not 100 <= amount <= 10**10:
            raise forms.FormError("amount", "a refund is at least ₹1.00")
    except forms.FormError as exc:
        shown = {"amount": fields.get("amount", "")[:20], "reason": fields.get("reason", "")[:100]}
        return await _payment_page(
            request, viewer, parsed, error=exc.message, form=shown, status=422
        )
    body = RefundRequest(amount_paise=amount, reason=reason)
    shown = {"amount": fields.get("amount", ""), "reason": reason}
    try:
        answer = await requesting.request_refund(
            _engine(request), _settings(request), viewer.signed_in.principal, parsed, body, key
        )
    except DomainError as exc:  # the key in flight or reused, a dependency away
        return await _payment_page(
            request, viewer, parsed, error=exc.detail, form=shown, status=exc.status
        )
    if answer.status >= 400:
        detail = str(answer.body.get("detail", "the refund was refused"))
        return await _payment_page(
            request, viewer, parsed, error=detail, form=shown, status=answer.status
        )
    return RedirectResponse(f"/console/payments/{parsed}?refunded=1", status_code=303)


# --- Fraud reviews -------------------------------------------------------------------------


async def _reviews_page(
    request: Request, viewer: web.Viewer, *, error: str | None = None, status: int = 200
) -> Response:
    try:
        fraud_auth.may_read(viewer.signed_in.principal)
    except Forbidden as exc:
        return web.render(request, "forbidden.html", status=403, viewer=viewer, detail=exc.detail)
    rows = await in_transaction(
        _engine(request),
        lambda conn: fraud_reviews.list_reviews(
            conn, status="pending", user_id=None, after=None, limit=100
        ),
    )
    return web.render(
        request,
        "reviews.html",
        status=status,
        viewer=viewer,
        reviews=rows,
        error=error,
        notice="Decision recorded." if request.query_params.get("decided") == "1" else None,
        may_decide=viewer.signed_in.principal.role is Role.finance_admin,
    )


@router.get("/reviews")
async def reviews(request: Request) -> Response:
    viewer = await web.viewer_of(request)
    if not isinstance(viewer, web.Viewer):
        return viewer
    return await _reviews_page(request, viewer)


@router.post("/reviews/{review_id}/decision")
async def decide_review(request: Request, review_id: str) -> Response:
    viewer = await web.viewer_of(request)
    if not isinstance(viewer, web.Viewer):
        return viewer
    parsed = forms.parse_uuid(review_id)
    if parsed is None:
        return _not_found(request, viewer, "that review")
    try:
        fields = await forms.read_form(request)
        decision = forms.choice(fields, "decision", ("release", "refund"), label="decision")
        reason = forms.text(fields, "reason", label="The reason", min_length=3, max_length=100)
    except forms.FormError as exc:
        return await _reviews_page(request, viewer, error=exc.message, status=422)
    here = origin.current()
    try:
        await in_transaction(
            _engine(request),
            lambda conn: review_decisions.decide(
                conn,
                _settings(request),
                viewer.signed_in.principal,
                parsed,
                decision,
                reason,
                request_id=here.request_id if here else None,
            ),
        )
    except DomainError as exc:
        return await _reviews_page(request, viewer, error=exc.detail, status=exc.status)
    return RedirectResponse("/console/reviews?decided=1", status_code=303)


# --- Settlements ---------------------------------------------------------------------------


@router.get("/settlements")
async def settlements_list(request: Request) -> Response:
    viewer = await web.viewer_of(request)
    if not isinstance(viewer, web.Viewer):
        return viewer
    if not settlement_auth.is_finance_reader(viewer.signed_in.principal):
        # As the API: finance readers only (support reads no payee's settlements).
        return web.render(request, "forbidden.html", status=403, viewer=viewer)
    raw = request.query_params.get("status", "")[:20]
    error = None
    status = None
    if raw:
        if raw in _SETTLEMENT_STATUSES:
            status = SettlementStatus(raw)
        else:
            error = "choose a status from the list"
    rows = await in_transaction(
        _engine(request), lambda conn: settlements.recent(conn, status=status, limit=100)
    )
    return web.render(
        request,
        "settlements.html",
        status=422 if error else 200,
        viewer=viewer,
        rows=rows,
        chosen=raw,
        error=error,
        statuses=_SETTLEMENT_STATUSES,
    )


# --- Dead letters --------------------------------------------------------------------------


def _may_see_dead_letters(viewer: web.Viewer) -> bool:
    # Dead letters carry whole messages (amounts, users): operators of money only.
    return viewer.signed_in.principal.role in MONEY_OPERATORS


async def _broker(what: str, call: Any) -> tuple[Any, str | None]:
    """The broker's answer, or why there is none: RabbitMQ away is a message on the page."""
    try:
        return await call, None
    except ValueError as exc:
        return None, str(exc)
    except Exception as exc:  # any failure to reach or read the broker is shown, not a 500
        log.warning("console.broker_unavailable", what=what, error=type(exc).__name__)
        return None, "RabbitMQ did not answer; try again in a moment"


@router.get("/dead-letters")
async def dead_letters(request: Request) -> Response:
    viewer = await web.viewer_of(request)
    if not isinstance(viewer, web.Viewer):
        return viewer
    if not _may_see_dead_letters(viewer):
        return web.render(request, "forbidden.html", status=403, viewer=viewer)
    settings = _settings(request)
    queue = request.query_params.get("queue", "")[:64] or None
    if queue is not None and queue not in QUEUES:
        return _not_found(request, viewer, "that queue")
    status, error = await _broker("status", queue_admin.broker_status(settings))
    letters: list[Any] = []
    if queue is not None and error is None:
        letters, error = await _broker("list", queue_admin.dlq_list(settings, queue, 100))
    return web.render(
        request,
        "dead_letters.html",
        viewer=viewer,
        queues=status[0] if status else [],
        queue=queue,
        letters=letters or [],
        error=error,
        notice=request.query_params.get("replayed"),
    )


@router.get("/dead-letters/{queue}/{message_id}")
async def dead_letter(request: Request, queue: str, message_id: str) -> Response:
    viewer = await web.viewer_of(request)
    if not isinstance(viewer, web.Viewer):
        return viewer
    if not _may_see_dead_letters(viewer):
        return web.render(request, "forbidden.html", status=403, viewer=viewer)
    if queue not in QUEUES or forms.parse_uuid(message_id) is None:
        return _not_found(request, viewer, "that dead letter")
    letters, error = await _broker("show", queue_admin.dlq_list(_settings(request), queue, 10_000))
    found = [d for d in letters or [] if d.message_id == message_id]
    if error is None and not found:
        return _not_found(request, viewer, f"dead letter {message_id} in {queue}")
    return web.render(
        request,
        "dead_letter.html",
        viewer=viewer,
        queue=queue,
        letter=found[0] if found else None,
        error=error,
        may_replay=viewer.signed_in.principal.role is Role.finance_admin,
    )


@router.post("/dead-letters/{queue}/{message_id}/replay")
async def replay(request: Request, queue: str, message_id: str) -> Response:
    """`dlq replay QUEUE --id MESSAGE` from the page: the same broker call, audited
    (`dlq.replayed`) as the staff member, with the queue's depth before and after."""
    viewer = await web.viewer_of(request)
    if not isinstance(viewer, web.Viewer):
        return viewer
    if viewer.signed_in.principal.role is not Role.finance_admin:
        return web.render(request, "forbidden.html", status=403, viewer=viewer)
    if queue not in QUEUES or forms.parse_uuid(message_id) is None:
        return _not_found(request, viewer, "that dead letter")
    settings = _settings(request)

    async def act() -> Acted[tuple[int, int]]:
        before = await queue_admin.dlq_depth(settings, queue)
        done = await queue_admin.dlq_replay(settings, queue, message_id)
        after = await queue_admin.dlq_depth(settings, queue)
        details = {"message_id": message_id, "replayed": done[0], "skipped": done[1]}
        return Acted(done, {"dead_letters": before}, {"dead_letters": after}, details)

    done, error = await _broker(
        "replay",
        audited(
            _engine(request),
            action="dlq.replayed",
            target_type="queue",
            target_id=queue,
            act=act,
            principal=viewer.signed_in.principal,
        ),
    )
    if error is not None:
        return web.render(
            request,
            "dead_letter.html",
            status=503,
            viewer=viewer,
            queue=queue,
            letter=None,
            error=error,
            may_replay=True,
        )
    return RedirectResponse(
        f"/console/dead-letters?queue={queue}&replayed={done[0]}", status_code=303
    )
