"""CSRF protection for requests carrying the finance console's session cookie, on a real
route (a promotional grant) over real HTTP; bearer requests are not affected."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from commdesk_billing.config import Settings
from commdesk_billing.security.csrf import csrf_token, token_valid
from commdesk_billing.security.jwt import Role, issue_token
from tests.conftest import auth
from tests.security.served import served

SECRET = "s" * 48
ORIGIN = "https://console.commdesk.test"
SESSION = "console-session-7f3a"


def test_a_token_is_bound_to_its_session_and_secret() -> None:
    token = csrf_token(SECRET, SESSION)
    assert token_valid(SECRET, SESSION, token)
    assert csrf_token(SECRET, SESSION) != token  # a fresh nonce each time
    assert not token_valid(SECRET, "another-session", token)
    assert not token_valid("t" * 48, SESSION, token)
    nonce, mac = token.split(".")
    assert not token_valid(SECRET, SESSION, f"{nonce}.{mac[:-2]}AA")
    for garbage in ("", ".", "abc", "é.é", f"{nonce}", f"AAAA.{mac}", "!!!.???"):
        assert not token_valid(SECRET, SESSION, garbage), garbage


async def _grant(
    api: httpx.AsyncClient, settings: Settings, wallet_id: str, **headers: str
) -> httpx.Response:
    finance = issue_token(settings, sub="finance-1", role=Role.finance_admin)
    return await api.post(
        f"/v1/wallets/{wallet_id}/grants",
        json={"credits": 7, "reason": "csrf test"},
        headers={**auth(finance, uuid.uuid4().hex), **headers},
    )


def _cookies(session: str = SESSION, csrf: str | None = None) -> str:
    pairs = [f"cdb_console_session={session}"] + ([f"cdb_console_csrf={csrf}"] if csrf else [])
    return "; ".join(pairs)


def _refused(r: httpx.Response, detail: str) -> None:
    assert r.status_code == 403, r.text
    body: dict[str, Any] = r.json()
    assert (body["code"], body["detail"]) == ("csrf_failed", detail)
    assert r.headers["x-content-type-options"] == "nosniff"


ORIGIN_DETAIL = "requests with a console session must come from an allowed origin"
TOKEN_DETAIL = "requests with a console session need a valid X-CSRF-Token header"


async def test_unsafe_requests_with_the_session_cookie_need_origin_and_token(
    settings: Settings,
) -> None:
    async with served(settings, csrf_secret=SecretStr(SECRET), cors_origins=(ORIGIN,)) as api:
        member = issue_token(settings, sub=f"user-{uuid.uuid4().hex}", role=Role.member)
        wallet_id = (await api.get("/v1/wallets/me", headers=auth(member))).json()["id"]
        good = csrf_token(SECRET, SESSION)

        # Bearer only, no cookie: not looked at.
        assert (await _grant(api, settings, wallet_id)).status_code == 201
        # A GET with the cookie is safe: not looked at either.
        r = await api.get("/v1/wallets/me", headers={**auth(member), "cookie": _cookies()})
        assert r.status_code == 200

        cases: list[tuple[dict[str, str], str]] = [
            ({"cookie": _cookies()}, ORIGIN_DETAIL),  # a form post from anywhere
            ({"cookie": _cookies(csrf=good), "x-csrf-token": good}, ORIGIN_DETAIL),
            (
                {
                    "cookie": _cookies(csrf=good),
                    "x-csrf-token": good,
                    "origin": "https://evil.test",
                },
                ORIGIN_DETAIL,
            ),
            ({"cookie": _cookies(), "origin": ORIGIN}, TOKEN_DETAIL),
            # Header without the cookie beside it: not a double submit.
            ({"cookie": _cookies(), "origin": ORIGIN, "x-csrf-token": good}, TOKEN_DETAIL),
            # Another session's token, double-submitted all the same.
            (
                {
                    "cookie": _cookies(csrf=csrf_token(SECRET, "other")),
                    "origin": ORIGIN,
                    "x-csrf-token": csrf_token(SECRET, "other"),
                },
                TOKEN_DETAIL,
            ),
            # A token made with another secret.
            (
                {
                    "cookie": _cookies(csrf=(forged := csrf_token("x" * 48, SESSION))),
                    "origin": ORIGIN,
                    "x-csrf-token": forged,
                },
                TOKEN_DETAIL,
            ),
        ]
        for headers, detail in cases:
            _refused(await _grant(api, settings, wallet_id, **headers), detail)
        # Nothing refused was granted: one grant of 7 so far.
        wallet = (await api.get("/v1/wallets/me", headers=auth(member))).json()
        assert wallet["available_credits"] == 7

        ok = {"cookie": _cookies(csrf=good), "x-csrf-token": good}
        assert (await _grant(api, settings, wallet_id, origin=ORIGIN, **ok)).status_code == 201
        # Without Origin, the Referer's origin counts; our own origin is allowed too.
        referer = f"{ORIGIN}/finance/wallets?x=1"
        assert (await _grant(api, settings, wallet_id, referer=referer, **ok)).status_code == 201
        own = settings.public_base_url
        assert (await _grant(api, settings, wallet_id, origin=own, **ok)).status_code == 201
        wallet = (await api.get("/v1/wallets/me", headers=auth(member))).json()
        assert wallet["available_credits"] == 28


@pytest.mark.parametrize("secret", [None, SecretStr(SECRET)])
async def test_without_a_secret_every_cookie_request_is_refused(
    settings: Settings, secret: SecretStr | None
) -> None:
    async with served(settings, csrf_secret=secret, cors_origins=(ORIGIN,)) as api:
        member = issue_token(settings, sub=f"user-{uuid.uuid4().hex}", role=Role.member)
        wallet_id = (await api.get("/v1/wallets/me", headers=auth(member))).json()["id"]
        token = csrf_token(SECRET, SESSION)
        r = await _grant(
            api,
            settings,
            wallet_id,
            cookie=_cookies(csrf=token),
            origin=ORIGIN,
            **{"x-csrf-token": token},
        )
        if secret is None:
            _refused(r, TOKEN_DETAIL)
        else:
            assert r.status_code == 201
