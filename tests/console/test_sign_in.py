"""Signing in to the console over real HTTP: sessions, cookies, CSRF, roles, sign-out, the
rate limit, the audit trail; and the page headers (the console's own CSP)."""

from __future__ import annotations

import re

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from commdesk_billing.config import Environment, Settings
from commdesk_billing.console import passwords
from commdesk_billing.security.csrf import console_cookies
from commdesk_billing.security.headers import CONSOLE_CSP
from tests.console.conftest import PASSWORD, Console, Staff, served_console


def _csrf(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, "no csrf_token field on the page"
    return match.group(1)


def test_passwords_hash_and_verify() -> None:
    stored = passwords.hash_password(PASSWORD)
    assert stored.startswith("scrypt$15$8$1$")
    assert passwords.verify(PASSWORD, stored)
    assert not passwords.verify(PASSWORD + "!", stored)
    assert passwords.hash_password(PASSWORD) != stored  # a salt of its own
    for broken in ("", "scrypt$", "bcrypt$1$2$3$4$5", "scrypt$40$8$1$AA$AA", stored[:-4]):
        assert not passwords.verify(PASSWORD, broken), broken
    assert not passwords.verify(PASSWORD, passwords.DUMMY_HASH)


def test_cookie_names_are_host_prefixed_and_secure_unless_on_loopback_http() -> None:
    local = console_cookies(Settings(public_base_url="http://127.0.0.1:8000"))
    assert (local.session, local.secure) == ("cdb_console_session", False)
    public = console_cookies(Settings(public_base_url="https://billing.commdesk.in"))
    assert (public.session, public.csrf, public.secure) == (
        "__Host-cdb_console_session",
        "__Host-cdb_console_csrf",
        True,
    )
    # Production is never the loopback exception.
    prod = Settings(public_base_url="http://127.0.0.1:8000").model_copy(
        update={"env": Environment.production}
    )
    assert console_cookies(prod).secure


async def test_sign_in_pages_refusals_and_sign_out(
    console: Console, staff: Staff, engine: AsyncEngine
) -> None:
    email = await staff("finance_admin")
    async with console.client() as c:
        away = await c.get("/console")
        assert away.status_code == 303 and away.headers["location"] == "/console/sign-in"
        page = await c.get("/console/sign-in")
        assert page.status_code == 200 and 'id="sign-in"' in page.text
        assert page.headers["content-security-policy"] == CONSOLE_CSP
        assert "'unsafe-inline'" not in CONSOLE_CSP and "<script" not in page.text
        css = await c.get("/console/static/console.css")
        assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")

        wrong = await c.post("/console/sign-in", data={"email": email, "password": "nope" * 4})
        assert wrong.status_code == 401 and 'id="error"' in wrong.text
        assert "set-cookie" not in wrong.headers
        bad = await c.post("/console/sign-in", data={"email": "not an email", "password": "x"})
        assert bad.status_code == 422 and "enter an email address" in bad.text

        signed = await console.sign_in(c, email)
        assert signed.status_code == 303 and signed.headers["location"] == "/console"
        cookies = signed.headers.get_list("set-cookie")
        assert len(cookies) == 2
        for cookie in cookies:
            lowered = cookie.lower()
            assert "httponly" in lowered and "samesite=strict" in lowered and "path=/" in lowered
        home = await c.get("/console")
        assert home.status_code == 200 and email in home.text
        assert home.headers["content-security-policy"] == CONSOLE_CSP
        token = _csrf(home.text)

        # A form post without the token, or with another, is refused by the CSRF guard.
        for fields in ({}, {"csrf_token": token[:-3] + "AAA"}):
            refused = await c.post("/console/sign-out", data=fields)
            assert refused.status_code == 403 and refused.json()["code"] == "csrf_failed"
        # From another site, even with the right token.
        other = await c.post(
            "/console/sign-out",
            data={"csrf_token": token},
            headers={"Origin": "https://evil.example"},
        )
        assert other.status_code == 403 and other.json()["code"] == "csrf_failed"
        assert (await c.get("/console")).status_code == 200  # still signed in

        out = await c.post("/console/sign-out", data={"csrf_token": token})
        assert out.status_code == 303 and out.headers["location"] == "/console/sign-in"
        assert (await c.get("/console")).status_code == 303
    # The old cookie is dead on the server too, not only dropped by the browser.
    async with console.client() as replay:
        session = cookies[0].split(";")[0] if "session" in cookies[0] else cookies[1].split(";")[0]
        again = await replay.get("/console", headers={"Cookie": session})
        assert again.status_code == 303

    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT action, actor_sub, actor_role, channel FROM audit_logs"
                    " WHERE target_type = 'staff' AND target_id = :e ORDER BY created_at, id"
                ),
                {"e": email},
            )
        ).all()
        revoked = (
            await conn.execute(
                text(
                    "SELECT count(*) FROM console_sessions s JOIN console_staff f"
                    " ON f.id = s.staff_id WHERE f.email = :e AND s.revoked_at IS NOT NULL"
                ),
                {"e": email},
            )
        ).scalar_one()
    assert [tuple(r) for r in rows] == [
        ("console.staff.created", f"cli:{_os_user()}", "operator", "cli"),
        ("console.sign_in.refused", "console:anonymous", "anonymous", "http"),
        ("console.sign_in", f"console:{email}", "finance_admin", "http"),
        ("console.sign_out", f"console:{email}", "finance_admin", "http"),
    ]
    assert revoked == 1


async def test_a_member_cannot_open_the_console(
    console: Console, staff: Staff, engine: AsyncEngine
) -> None:
    email = await staff("member")
    async with console.client() as c:
        assert (await console.sign_in(c, email)).status_code == 303
        for path in ("/console", "/console/payments", "/console/dead-letters"):
            page = await c.get(path)
            assert page.status_code == 403 and 'id="forbidden"' in page.text, path
        # Nor act: the refund form's post is refused the same way.
        page = await c.get("/console")
        refused = await c.post(
            "/console/payments/00000000-0000-0000-0000-000000000000/refunds",
            data={"csrf_token": _csrf(page.text), "reason": "try", "idempotency_key": "x"},
        )
        assert refused.status_code == 403 and 'id="forbidden"' in refused.text
        # The 403 page still signs out, and that ends the session on the server too.
        out = await c.post("/console/sign-out", data={"csrf_token": _csrf(page.text)})
        assert out.status_code == 303
    async with engine.connect() as conn:
        live = (
            await conn.execute(
                text(
                    "SELECT count(*) FROM console_sessions s JOIN console_staff f"
                    " ON f.id = s.staff_id WHERE f.email = :e AND s.revoked_at IS NULL"
                ),
                {"e": email},
            )
        ).scalar_one()
    assert live == 0


async def test_each_role_opens_what_its_api_role_may_read(console: Console, staff: Staff) -> None:
    expected = {
        "finance_admin": {"reviews": 200, "settlements": 200, "dead-letters": 200},
        "support": {"reviews": 200, "settlements": 403, "dead-letters": 200},
        "auditor": {"reviews": 403, "settlements": 200, "dead-letters": 403},
    }
    for role, pages in expected.items():
        email = await staff(role)
        async with console.client() as c:
            await console.sign_in(c, email)
            home = await c.get("/console")
            assert home.status_code == 200
            seen = {}
            for page in pages:
                seen[page] = (await c.get(f"/console/{page}")).status_code
                # The navigation links only what the role may open.
                assert (f'href="/console/{page}"' in home.text.split("</nav>")[0]) == (
                    seen[page] == 200
                ), (role, page)
        assert seen == pages, role


async def test_sign_in_attempts_are_limited_per_account(
    settings: Settings, engine: AsyncEngine, staff: Staff
) -> None:
    email = await staff("support")
    async with served_console(settings, engine, console_sign_in_per_account=3) as console:
        c = console.client()
        async with c:
            codes = []
            for _ in range(4):
                r = await c.post("/console/sign-in", data={"email": email, "password": "w" * 12})
                codes.append(r.status_code)
            # The right password does not get past a spent limit either.
            last = await console.sign_in(c, email)
    assert codes == [401, 401, 401, 429]
    assert last.status_code == 429 and int(last.headers["retry-after"]) > 0


async def test_sign_in_from_another_site_is_refused(console: Console, staff: Staff) -> None:
    email = await staff("finance_admin")
    async with console.client() as c:
        r = await c.post(
            "/console/sign-in",
            data={"email": email, "password": PASSWORD},
            headers={"Origin": "https://evil.example"},
        )
    assert r.status_code == 403 and "set-cookie" not in r.headers


async def test_bad_input_is_a_page_not_a_500(console: Console, staff: Staff) -> None:
    email = await staff("finance_admin")
    async with console.client() as c:
        await console.sign_in(c, email)
        search = await c.get("/console/payments", params={"status": "NOPE", "order_id": "x" * 80})
        assert search.status_code == 422
        assert "choose a status" in search.text and "at most 50 characters" in search.text
        assert (await c.get("/console/payments/not-a-uuid")).status_code == 404
        assert (await c.get("/console/settlements", params={"status": "x"})).status_code == 422
        missing = await c.get("/console/payments/00000000-0000-0000-0000-000000000000")
        assert missing.status_code == 404 and 'id="not-found"' in missing.text
        token = _csrf((await c.get("/console")).text)
        for fields in (
            {"amount": "12.345", "reason": "too fine", "idempotency_key": "k"},
            {"amount": "ten", "reason": "words"},
            {"amount": "0.50", "reason": "small"},
        ):
            r = await c.post(
                "/console/payments/00000000-0000-0000-0000-000000000000/refunds",
                data={"csrf_token": token, **fields},
            )
            # The payment does not exist: the page says so, whatever the form held.
            assert r.status_code == 404, (fields, r.status_code, r.text[:300])
        bad = await c.post(
            "/console/reviews/00000000-0000-0000-0000-000000000000/decision",
            data={"csrf_token": token, "decision": "maybe", "reason": "x"},
        )
        assert bad.status_code == 422 and "choose a decision" in bad.text
        unknown_queue = await c.get("/console/dead-letters", params={"queue": "nope"})
        assert unknown_queue.status_code == 404


def _os_user() -> str:
    import getpass

    return getpass.getuser()


async def test_forms_are_taken_only_by_the_console_and_only_small(
    console: Console, staff: Staff
) -> None:
    email = await staff("finance_admin")
    async with console.client() as c:
        # Outside /console a form body is still 415: the API takes JSON.
        api = await c.post("/v1/payments/orders", data={"pack_code": "pack_300"})
        assert api.status_code == 415
        await console.sign_in(c, email)
        token = _csrf((await c.get("/console")).text)
        # A form larger than the body limit is refused by the guard before it is parsed.
        huge = await c.post(
            "/console/sign-out",
            data={"csrf_token": token, "pad": "x" * (console.settings.max_body_bytes + 1)},
        )
        assert huge.status_code == 403 and huge.json()["code"] == "csrf_failed"
        # The token sent twice is no token.
        twice = await c.post(
            "/console/sign-out",
            content=f"csrf_token={token}&csrf_token={token}",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert twice.status_code == 403
        assert (await c.get("/console")).status_code == 200
