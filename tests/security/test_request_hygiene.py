"""Request hygiene on the wire (docs/api.md "Request hygiene"): duplicate parameters,
security headers, CORS, allowed hosts, /metrics and the API docs, each over real HTTP to
our API under uvicorn."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from starlette.requests import Request

from commdesk_billing.config import Environment, Settings
from commdesk_billing.problems import MEDIA_TYPE
from commdesk_billing.security.addresses import client_ip
from commdesk_billing.security.headers import API_CSP, DOCS_CSP
from commdesk_billing.security.jwt import Role, issue_token
from tests.conftest import auth
from tests.security.served import raw_exchange, served

SECURITY = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "content-security-policy": API_CSP,
    "cache-control": "no-store",
}
ORIGIN = "https://console.commdesk.test"


def _problem(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == MEDIA_TYPE
    body: dict[str, Any] = r.json()
    assert body["code"] == code
    return body


def _secured(r: httpx.Response) -> None:
    assert {k: r.headers.get(k) for k in SECURITY} == SECURITY, r.request.url
    assert "server" not in r.headers and "date" in r.headers
    assert "strict-transport-security" not in r.headers  # development


async def test_duplicate_parameters_are_refused_before_any_route(settings: Settings) -> None:
    async with served(settings) as api:
        member = issue_token(settings, sub=f"user-{uuid.uuid4().hex}", role=Role.member)
        # One of each passes on to the route (which wants a token: 401).
        assert (await api.get("/v1/payments?limit=1")).status_code == 401
        for query in ("limit=1&limit=2", "limit=1&%6Cimit=2", "a=&a="):
            r = await api.get(f"/v1/wallets/me?{query}")
            body = _problem(r, 400, "duplicate_parameter")
            assert body["detail"] == "each query parameter may be sent once"
            _secured(r)
        for name, values in (
            ("Authorization", [f"Bearer {member}", "Bearer forged"]),
            ("Authorization", [f"Bearer {member}", f"Bearer {member}"]),
            ("Idempotency-Key", ["k1", "k2"]),
            ("X-Device-Id", ["d1", "d2"]),
            ("Content-Type", ["application/json", "text/plain"]),
        ):
            headers = httpx.Headers([(name, v) for v in values])
            r = await api.get("/v1/wallets/me", headers=headers)
            body = _problem(r, 400, "duplicate_parameter")
            assert body["detail"] == f"the {name.lower()} header may be sent once"
        # The same token once is the member's own wallet.
        assert (await api.get("/v1/wallets/me", headers=auth(member))).status_code == 200
        # Two Host lines, as raw bytes (a client library would not send them).
        port = str(api.base_url.port)
        raw = await raw_exchange(
            str(api.base_url),
            b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:" + port.encode() + b"\r\n"
            b"Host: evil.example\r\nConnection: close\r\n\r\n",
        )
        assert raw.startswith(b"HTTP/1.1 400 "), raw[:80]
        assert b'"code":"duplicate_parameter"' in raw.replace(b" ", b"")


async def test_a_duplicate_idempotency_key_moves_nothing(settings: Settings) -> None:
    async with served(settings) as api:
        member = issue_token(settings, sub=f"user-{uuid.uuid4().hex}", role=Role.member)
        wallet = (await api.get("/v1/wallets/me", headers=auth(member))).json()
        grant = await api.post(
            f"/v1/wallets/{wallet['id']}/grants",
            json={"credits": 50, "reason": "t"},
            headers=auth(issue_token(settings, sub="fin", role=Role.finance_admin), "g1"),
        )
        assert grant.status_code == 201
        headers = httpx.Headers(
            [
                ("Authorization", f"Bearer {member}"),
                ("Idempotency-Key", "a"),
                ("Idempotency-Key", "b"),
            ]
        )
        r = await api.post(
            f"/v1/wallets/{wallet['id']}/debits",
            json={"credits": 5, "reason": "x"},
            headers=headers,
        )
        _problem(r, 400, "duplicate_parameter")
        after = (await api.get("/v1/wallets/me", headers=auth(member))).json()
        assert after["available_credits"] == 50


async def test_every_answer_carries_the_security_headers(settings: Settings) -> None:
    def boom(app: FastAPI) -> None:
        @app.get("/v1/_boom")
        async def _boom() -> None:
            raise RuntimeError("a bug")

    async with served(settings, routes=boom) as api:
        answers = [
            await api.get("/healthz"),  # 200
            await api.get("/v1/wallets/me"),  # 401 problem
            await api.get("/v1/no-such-route"),  # 404 problem
            await api.delete("/healthz"),  # 405 problem
            await api.post("/v1/wallets/me", content=b"x", headers={"content-type": "text/plain"}),
            await api.get("/v1/_boom"),  # 500, answered outside every middleware
        ]
        assert [r.status_code for r in answers] == [200, 401, 404, 405, 415, 500]
        for r in answers:
            _secured(r)
        # A route's own caching choice stands (invoice PDFs); everything else is no-store.
        assert answers[0].headers["cache-control"] == "no-store"


async def test_production_adds_hsts_and_closes_docs_and_metrics(settings: Settings) -> None:
    async with served(settings, env=Environment.production) as api:
        r = await api.get("/healthz")
        assert r.headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"
        for path in ("/docs", "/redoc", "/openapi.json", "/metrics"):
            r = await api.get(path)
            _problem(r, 404, "not_found")
            assert r.headers["strict-transport-security"].startswith("max-age=")
        # Production answers for our public name only, not for loopback names.
        r = await api.get("/healthz", headers={"host": "localhost"})
        assert r.status_code == 200  # health checks reach us by address: exempt
        _problem(
            await api.get("/v1/wallets/me", headers={"host": "localhost"}), 400, "host_not_allowed"
        )


async def test_docs_pages_have_their_own_policy_and_no_inline_script(settings: Settings) -> None:
    async with served(settings) as api:
        page = await api.get("/docs")
        assert page.status_code == 200
        assert page.headers["content-security-policy"] == DOCS_CSP
        # Everything the pages load comes from us: no CDN, no font service.
        assert "script-src 'self';" in DOCS_CSP and "https:" not in DOCS_CSP
        assert "unsafe-inline" not in DOCS_CSP.split("script-src", 1)[1].split(";", 1)[0]
        # Every script on the page is a file (the policy allows no inline one).
        html = page.text
        assert html.count("<script") == html.count("<script src=") == 2
        init = await api.get("/docs/swagger-init.js")
        assert init.status_code == 200 and "SwaggerUIBundle" in init.text
        assert init.headers["content-type"].startswith("text/javascript")
        assert (await api.get("/redoc")).headers["content-security-policy"] == DOCS_CSP
        assert "https:" not in html and "https:" not in (await api.get("/redoc")).text
        bundle = await api.get("/docs/assets/swagger-ui-bundle.js")
        assert bundle.status_code == 200 and "SwaggerUIBundle" in bundle.text
        assert bundle.headers["content-type"].startswith("text/javascript")
        assert bundle.headers["content-security-policy"] == DOCS_CSP
        redoc_js = await api.get("/docs/assets/redoc.standalone.js")
        assert redoc_js.status_code == 200 and len(redoc_js.content) > 500_000
        # Only the listed files: the folder's licences are not served, nor anything else.
        for name in ("VERSIONS", "redoc.LICENSE", "..%2Fapp.py"):
            _problem(await api.get(f"/docs/assets/{name}"), 404, "not_found")
        assert "/v1/wallets/me" in (await api.get("/openapi.json")).json()["paths"]
        # The API's own answers keep the strict policy.
        assert (await api.get("/openapi.json")).headers["content-security-policy"] == API_CSP
    async with served(settings, api_docs=False) as api:
        for path in (
            "/docs",
            "/docs/swagger-init.js",
            "/docs/assets/swagger-ui.css",
            "/redoc",
            "/openapi.json",
        ):
            _problem(await api.get(path), 404, "not_found")


async def test_metrics_are_served_only_with_the_token(settings: Settings) -> None:
    token = "m" * 40
    async with served(settings, metrics_token=SecretStr(token)) as api:
        for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": f"Basic {token}"}):
            r = await api.get("/metrics", headers=headers)
            body = _problem(r, 401, "unauthorized")
            assert body["detail"] == "a valid bearer token is required"
            assert r.headers["www-authenticate"] == 'Bearer realm="metrics"'
            assert "billing_http_requests_total" not in r.text
        r = await api.get("/metrics", headers={"authorization": f"Bearer {token}"})
        assert r.status_code == 200 and "billing_http_requests_total" in r.text
    async with served(settings) as api:  # development, no token: open
        assert (await api.get("/metrics")).status_code == 200


async def test_cors_is_closed_by_default(settings: Settings) -> None:
    preflight = {
        "origin": ORIGIN,
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization, content-type, idempotency-key",
    }
    async with served(settings) as api:
        r = await api.options("/v1/wallets/me", headers=preflight)
        body = _problem(r, 403, "cors_refused")
        assert body["detail"] == "cross-origin requests are not allowed from this origin"
        assert "access-control-allow-origin" not in r.headers
        _secured(r)
        # A plain request from a browser page elsewhere: answered, but the browser may not
        # read it (no grant), and caches keep answers per origin.
        r = await api.get("/healthz", headers={"origin": ORIGIN})
        assert "access-control-allow-origin" not in r.headers and r.headers["vary"] == "Origin"


async def test_cors_grants_configured_origins_only(settings: Settings) -> None:
    preflight = {"origin": ORIGIN, "access-control-request-method": "POST"}
    async with served(settings, cors_origins=(ORIGIN,), cors_max_age_s=120) as api:
        r = await api.options(
            "/v1/wallets/me",
            headers={
                **preflight,
                "access-control-request-headers": "Authorization,Idempotency-Key",
            },
        )
        assert r.status_code == 204, r.text
        assert r.headers["access-control-allow-origin"] == ORIGIN
        assert r.headers["access-control-allow-methods"] == "GET, POST, PUT, PATCH, DELETE"
        assert "idempotency-key" in r.headers["access-control-allow-headers"].split(", ")
        assert r.headers["access-control-max-age"] == "120"
        assert "access-control-allow-credentials" not in r.headers
        _problem(
            await api.options(
                "/v1/wallets/me", headers={**preflight, "origin": "https://evil.test"}
            ),
            403,
            "cors_refused",
        )
        body = _problem(
            await api.options(
                "/v1/wallets/me", headers={**preflight, "access-control-request-method": "TRACE"}
            ),
            403,
            "cors_refused",
        )
        assert body["detail"] == "cross-origin requests may use GET, POST, PUT, PATCH, DELETE"
        _problem(
            await api.options(
                "/v1/wallets/me", headers={**preflight, "access-control-request-headers": "x-evil"}
            ),
            403,
            "cors_refused",
        )
        r = await api.get("/v1/wallets/me", headers={"origin": ORIGIN})
        assert r.status_code == 401
        assert r.headers["access-control-allow-origin"] == ORIGIN
        assert "x-request-id" in r.headers["access-control-expose-headers"]
        r = await api.get("/v1/wallets/me", headers={"origin": "https://evil.test"})
        assert "access-control-allow-origin" not in r.headers


async def test_only_allowed_hosts_are_answered(settings: Settings) -> None:
    async with served(settings, allowed_hosts=("api.commdesk.test",)) as api:
        for host in ("localhost", "127.0.0.1:1", "[::1]:8000", "API.commdesk.test:443"):
            r = await api.get("/v1/wallets/me", headers={"host": host})
            assert r.status_code == 401, host  # through to the route
        for host in ("evil.example", "api.commdesk.test.evil.example", "", "[::2]"):
            r = await api.get("/v1/wallets/me", headers={"host": host})
            body = _problem(r, 400, "host_not_allowed")
            assert body["detail"] == "this server does not answer for that host"
            _secured(r)
        assert (await api.get("/readyz", headers={"host": "10.0.0.7:8000"})).status_code == 200


CASES = [
    # (peer trusted, X-Forwarded-For lines, the client's address)
    (False, ["52.66.25.127"], "127.0.0.1"),  # an untrusted peer's header counts for nothing
    (True, [], "127.0.0.1"),
    (True, ["52.66.25.127"], "52.66.25.127"),
    (True, ["6.6.6.6, 52.66.25.127"], "52.66.25.127"),  # the client's own prefix ignored
    (True, ["52.66.25.127, 10.1.2.3"], "52.66.25.127"),  # our inner proxy passed over
    (True, ["6.6.6.6", "52.66.25.127"], "52.66.25.127"),  # two header lines, in order
    (True, ["garbage, 52.66.25.127"], "52.66.25.127"),
    (True, ["52.66.25.127, garbage"], "127.0.0.1"),  # garbage after a trusted hop
    (True, ["10.0.0.9, 10.0.0.8"], "10.0.0.9"),  # all ours (a probe from inside)
    (True, ["[2001:db8::1]:443"], "2001:db8::1"),
    (True, ["::ffff:52.66.25.127"], "52.66.25.127"),
]


def _echo_ip(app: FastAPI) -> None:
    @app.get("/v1/_ip")
    async def _ip(request: Request) -> dict[str, str | None]:
        return {"ip": client_ip(request.scope)}


@pytest.mark.parametrize("peer_trusted", [False, True])
async def test_the_client_address_comes_from_trusted_proxies_only(
    settings: Settings, peer_trusted: bool
) -> None:
    trusted = ("127.0.0.0/8", "10.0.0.0/8") if peer_trusted else ()
    async with served(settings, routes=_echo_ip, trusted_proxies=trusted) as api:
        for case_trusted, forwarded, expected in CASES:
            if case_trusted is not peer_trusted:
                continue
            headers = httpx.Headers([("x-forwarded-for", v) for v in forwarded])
            r = await api.get("/v1/_ip", headers=headers)
            assert r.json() == {"ip": expected}, forwarded
