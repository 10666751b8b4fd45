"""Drawing the console's pages and keeping its cookies: Jinja2 templates (autoescaped) from
this package, the session and CSRF cookies (`security/csrf.console_cookies`: `__Host-`,
Secure, HttpOnly, SameSite=Strict), and who is signed in."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from commdesk_billing.config import Settings
from commdesk_billing.console import sessions
from commdesk_billing.db.engine import in_transaction
from commdesk_billing.modules.invoices.words import rupees
from commdesk_billing.security.csrf import console_cookies, csrf_token, origin_of, token_valid
from commdesk_billing.security.roles import FINANCE_READERS, MONEY_OPERATORS

HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static"
IST = timezone(timedelta(hours=5, minutes=30))

_env = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _when(value: datetime | None) -> str:
    if value is None:
        return "—"
    return value.astimezone(IST).strftime("%d %b %Y %H:%M:%S IST")


def _inr(paise: int) -> str:
    return f"₹{rupees(paise)}"


_env.filters["inr"] = _inr
_env.filters["when"] = _when


@dataclass(frozen=True)
class Viewer:
    """The signed-in staff member, and the CSRF token their page's forms carry."""

    signed_in: sessions.Current
    csrf: str
    fresh_csrf: bool  # the cookie must be (re)set with this page

    @property
    def role(self) -> str:
        return self.signed_in.staff.role

    @property
    def links(self) -> list[tuple[str, str]]:
        """The pages this role may open (the others answer 403: no link to them)."""
        role = self.signed_in.principal.role
        shown = [("/console", "Home"), ("/console/payments", "Payments")]
        if role in MONEY_OPERATORS:
            shown.append(("/console/reviews", "Fraud review"))
        if role in FINANCE_READERS:
            shown.append(("/console/settlements", "Settlements"))
            shown.append(("/console/findings", "Reconciliation"))
            shown.append(("/console/analytics", "Analytics"))
        if role in MONEY_OPERATORS:
            shown.append(("/console/dead-letters", "Dead letters"))
        return shown if sessions.may_open_console(self.signed_in.staff) else []


def render(
    request: Request,
    template: str,
    status: int = 200,
    viewer: Viewer | None = None,
    **context: Any,
) -> HTMLResponse:
    html = _env.get_template(template).render(viewer=viewer, path=request.url.path, **context)
    response = HTMLResponse(html, status_code=status)
    if viewer is not None and viewer.fresh_csrf:
        set_cookie(request, response, "csrf", viewer.csrf)
    return response


def set_cookie(request: Request, response: Response, which: str, value: str) -> None:
    settings: Settings = request.app.state.settings
    names = console_cookies(settings)
    response.set_cookie(
        names.session if which == "session" else names.csrf,
        value,
        max_age=settings.console_session_ttl_s,
        path="/",
        secure=names.secure,
        httponly=True,
        samesite="strict",
    )


def clear_cookies(request: Request, response: Response) -> None:
    names = console_cookies(request.app.state.settings)
    for name in (names.session, names.csrf):
        response.delete_cookie(
            name, path="/", secure=names.secure, httponly=True, samesite="strict"
        )


def to_sign_in(request: Request) -> Response:
    response = RedirectResponse("/console/sign-in", status_code=303)
    clear_cookies(request, response)
    return response


def same_origin(request: Request) -> bool:
    """A form post came from one of our own pages (its Origin, else its Referer): asked of
    the sign-in form, which no session cookie (and so no CSRF guard) protects yet."""
    settings: Settings = request.app.state.settings
    allowed = {*settings.cors_origins, origin_of(settings.public_base_url)}
    sent = request.headers.get("origin") or origin_of(request.headers.get("referer", "")) or ""
    return sent in allowed


async def viewer_of(request: Request, *, staff_only: bool = True) -> Viewer | Response:
    """The signed-in staff member, or the answer to give instead: the sign-in page (no live
    session) or a 403 page (an account whose role may not use the console, unless
    `staff_only` is False: signing out)."""
    settings: Settings = request.app.state.settings
    engine: AsyncEngine = request.app.state.engine
    names = console_cookies(settings)
    token = request.cookies.get(names.session)
    if not token:
        return RedirectResponse("/console/sign-in", status_code=303)
    signed_in = await in_transaction(engine, lambda conn: sessions.current(conn, settings, token))
    if signed_in is None:
        return to_sign_in(request)
    secret = settings.csrf_secret.get_secret_value() if settings.csrf_secret else None
    if secret is None:
        return render(request, "unavailable.html", status=503)
    cookie = request.cookies.get(names.csrf, "")
    fresh = not (cookie and token_valid(secret, token, cookie))
    viewer = Viewer(signed_in, csrf_token(secret, token) if fresh else cookie, fresh)
    if staff_only and not sessions.may_open_console(signed_in.staff):
        return render(request, "forbidden.html", status=403, viewer=viewer)
    return viewer
