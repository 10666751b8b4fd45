"""A browser's CORS preflight, as a frontend on a configured origin sends it before each
kind of call it makes (docs/frontend.md): answered 204 with the grant on every route of the
API, whatever methods the route itself has (a preflight once met a router with no OPTIONS
route and got 405), and the real call after it carries the grant too."""

from __future__ import annotations

import re

from commdesk_billing.config import Settings
from commdesk_billing.security.jwt import Role, issue_token
from tests.security.served import served

FRONTEND = "https://app.commdesk.test"
# What a frontend's fetch() sends: the token, a JSON body, the key of a money-moving call.
ASKED = "authorization, content-type, idempotency-key, x-request-id"


async def test_every_route_answers_a_preflight_from_a_configured_origin(
    settings: Settings,
) -> None:
    async with served(settings, cors_origins=(FRONTEND,), cors_allow_credentials=True) as api:
        spec = (await api.get("/openapi.json")).json()
        checked = 0
        for template, operations in spec["paths"].items():
            path = re.sub(r"\{[^}]+\}", "00000000-0000-4000-8000-000000000000", template)
            for method in operations:
                r = await api.options(
                    path,
                    headers={
                        "origin": FRONTEND,
                        "access-control-request-method": method.upper(),
                        "access-control-request-headers": ASKED,
                    },
                )
                assert r.status_code == 204, (method, template, r.status_code, r.text)
                assert r.headers["access-control-allow-origin"] == FRONTEND
                assert r.headers["access-control-allow-credentials"] == "true"
                assert method.upper() in r.headers["access-control-allow-methods"].split(", ")
                allowed = set(r.headers["access-control-allow-headers"].split(", "))
                assert {"authorization", "content-type", "idempotency-key"} <= allowed
                assert r.headers["vary"] == "Origin"
                assert r.content == b""
                checked += 1
        assert checked > 80
        # The call itself, after the preflight: the grant, and the headers a frontend reads.
        token = issue_token(settings, sub="cors-member", role=Role.member)
        r = await api.post(
            "/v1/payments/orders",
            json={},
            headers={
                "origin": FRONTEND,
                "authorization": f"Bearer {token}",
                "idempotency-key": "cors-check-1",
            },
        )
        assert r.status_code == 422  # an empty body: refused, and the browser may read why
        assert r.headers["access-control-allow-origin"] == FRONTEND
        exposed = r.headers["access-control-expose-headers"].split(", ")
        assert {"x-request-id", "retry-after", "ratelimit", "location"} <= set(exposed)


async def test_a_preflight_from_another_origin_is_refused_not_405(settings: Settings) -> None:
    async with served(settings, cors_origins=(FRONTEND,)) as api:
        r = await api.options(
            "/v1/payments/orders",
            headers={"origin": "https://evil.test", "access-control-request-method": "POST"},
        )
        assert r.status_code == 403
        assert r.json()["code"] == "cors_refused"
        assert "access-control-allow-origin" not in r.headers
        # An OPTIONS that is no preflight (no Access-Control-Request-Method) is routed as
        # any other method: the route has no OPTIONS, so 405, as before.
        r = await api.options("/v1/payments/orders", headers={"origin": FRONTEND})
        assert r.status_code == 405
