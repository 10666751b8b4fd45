"""RS256 tokens against a JWKS, over real HTTP: a loopback server publishes CommDesk's keys
(as its identity service would) and our API, served on loopback too, is pointed at it."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from commdesk_billing.app import create_app
from commdesk_billing.config import Settings
from commdesk_billing.security.devkeys import JWKS_PATH, SigningKey, jwks
from commdesk_billing.security.jwt import Role, issue_token
from commdesk_billing.telemetry.metrics import AUTH_REJECTED, JWKS_FETCHES
from tests.harness.servers import serving

# Made once: RSA key generation is the slow part.
KEY_1, KEY_2, STRANGER = SigningKey.generate(), SigningKey.generate(), SigningKey.generate()
ROUTE = "/v1/wallets/me"
GENERIC = "a valid bearer token is required"


@dataclass
class JwksServer:
    """CommDesk's JWKS endpoint: what it publishes, whether it answers, how often it was asked."""

    keys: list[SigningKey] = field(default_factory=lambda: [KEY_1])
    down: bool = False
    delay_s: float = 0.0  # a hung endpoint: answers this late
    hits: int = 0
    document: dict[str, Any] | None = None  # served instead of the keys' JWKS when set

    def app(self) -> Starlette:
        async def serve(request: Request) -> Response:
            self.hits += 1
            await asyncio.sleep(self.delay_s)
            if self.down:
                return Response("unavailable", status_code=503)
            return JSONResponse(self.document or jwks(*self.keys))

        return Starlette(routes=[Route(JWKS_PATH, serve)])


@dataclass
class Api:
    client: httpx.AsyncClient
    settings: Settings
    jwks: JwksServer

    async def call(self, token: str | None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return await self.client.get(ROUTE, headers=headers)

    def token(self, key: SigningKey, *, kid: str | None = None, **claims: Any) -> str:
        return jwt.encode(
            self.claims(**claims),
            key.private_key,
            algorithm="RS256",
            headers={"kid": kid or key.kid},
        )

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = datetime.now(UTC)
        return {
            "sub": f"user-{uuid.uuid4().hex}",
            "role": "member",
            "iss": self.settings.jwt_issuer,
            "aud": self.settings.jwt_audience,
            "iat": now,
            "nbf": now,
            "exp": now + timedelta(minutes=10),
            **overrides,
        }


MakeApi = Callable[..., Awaitable[Api]]


@pytest.fixture
async def make_api(settings: Settings) -> AsyncIterator[MakeApi]:
    """An API process of its own (a cold key cache) against a JWKS server of its own."""
    async with AsyncExitStack() as exits:

        async def make(**overrides: Any) -> Api:
            server = JwksServer()
            jwks_url = await exits.enter_async_context(serving(server.app()))
            s = settings.model_copy(
                update={
                    "jwt_jwks_url": jwks_url + JWKS_PATH,
                    "jwt_jwks_min_refresh_s": 0.3,
                    "jwt_jwks_timeout_s": 2.0,
                    **overrides,
                }
            )
            api_url = await exits.enter_async_context(serving(create_app(s)))
            client = await exits.enter_async_context(httpx.AsyncClient(base_url=api_url))
            return Api(client, s, server)

        yield make


def refused(r: httpx.Response) -> None:
    """Refused with 401, saying nothing about which check failed."""
    assert r.status_code == 401, r.text
    assert r.headers["www-authenticate"].startswith("Bearer ")
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert (body["code"], body["detail"]) == ("unauthorized", GENERIC), body


def rejected(kind: str) -> float:
    return float(AUTH_REJECTED.labels(kind)._value.get())


def fetches(outcome: str) -> float:
    return float(JWKS_FETCHES.labels(outcome)._value.get())


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def hs256_with_public_pem(api: Api, key: SigningKey) -> str:
    """The classic confusion: HS256, "signed" with the RSA public key's PEM as the secret
    (PyJWT refuses to make one, so it is written by hand)."""
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": key.kid}).encode())
    claims = {**api.claims(), "iat": 0, "nbf": 0}
    claims["exp"] = int((datetime.now(UTC) + timedelta(minutes=5)).timestamp())
    payload = _b64(json.dumps(claims).encode())
    signing_input = f"{header}.{payload}".encode()
    sig = hmac.new(key.public_pem(), signing_input, hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64(sig)}"


async def test_a_token_signed_by_a_published_key_is_accepted(make_api: MakeApi) -> None:
    api = await make_api()
    r = await api.call(api.token(KEY_1))
    assert r.status_code == 200, r.text
    # Development keeps the shared-secret tokens every other test uses.
    assert (
        await api.call(issue_token(api.settings, sub="dev", role=Role.member))
    ).status_code == 200
    assert api.jwks.hits == 1


async def test_forged_and_invalid_tokens_get_one_generic_401(make_api: MakeApi) -> None:
    api = await make_api()
    now = datetime.now(UTC)
    unsigned = jwt.encode(api.claims(), None, algorithm="none")  # type: ignore[arg-type]
    cases = {
        "none": (unsigned, "algorithm"),
        "wrong_key": (api.token(STRANGER, kid=KEY_1.kid), "signature"),
        "hs_rs_confusion": (hs256_with_public_pem(api, KEY_1), "signature"),
        "expired": (api.token(KEY_1, exp=now - timedelta(hours=1)), "expired"),
        "not_yet_valid": (api.token(KEY_1, nbf=now + timedelta(hours=1)), "claims"),
        "wrong_audience": (api.token(KEY_1, aud="another-service"), "claims"),
        "wrong_issuer": (api.token(KEY_1, iss="someone-else"), "claims"),
        "no_kid": (jwt.encode(api.claims(), KEY_1.private_key, algorithm="RS256"), "unknown_kid"),
        "rs512": (
            jwt.encode(
                api.claims(), KEY_1.private_key, algorithm="RS512", headers={"kid": KEY_1.kid}
            ),
            "algorithm",
        ),
        "garbage": ("not.a.token", "malformed"),
    }
    for name, (token, kind) in cases.items():
        before = rejected(kind)
        refused(await api.call(token))
        assert rejected(kind) == before + 1, name  # the reason is recorded, not answered
    refused(await api.call(None))


async def test_an_unknown_kid_is_refused_after_one_fetch(make_api: MakeApi) -> None:
    api = await make_api()
    assert (await api.call(api.token(KEY_1))).status_code == 200
    await asyncio.sleep(0.35)  # past the minimum interval: the unknown kid may fetch once
    refused(await api.call(api.token(KEY_2)))  # signed well, but not published
    assert api.jwks.hits == 2


async def test_a_rotated_key_is_found_and_the_removed_one_refused(make_api: MakeApi) -> None:
    api = await make_api()
    assert (await api.call(api.token(KEY_1))).status_code == 200
    api.jwks.keys = [KEY_2]  # CommDesk rotates: the new key in, the old one out
    await asyncio.sleep(0.35)
    assert (await api.call(api.token(KEY_2))).status_code == 200  # unknown kid: fetched again
    assert api.jwks.hits == 2
    refused(await api.call(api.token(KEY_1)))  # the refreshed set no longer has it


async def test_a_remembered_token_is_refused_once_its_key_is_rotated_out(
    make_api: MakeApi,
) -> None:
    api = await make_api()
    token = api.token(KEY_1)
    for _ in range(2):  # the second time from the verifier's memory
        assert (await api.call(token)).status_code == 200
    api.jwks.keys = [KEY_2]
    await asyncio.sleep(0.35)
    assert (await api.call(api.token(KEY_2))).status_code == 200  # the set is fetched again
    refused(await api.call(token))  # the very same token: its key is gone


async def test_both_keys_verify_while_a_rotation_overlaps(make_api: MakeApi) -> None:
    api = await make_api()
    api.jwks.keys = [KEY_1, KEY_2]
    for key in (KEY_1, KEY_2, KEY_1):
        assert (await api.call(api.token(key))).status_code == 200
    assert api.jwks.hits == 1


async def test_jwks_down_cached_keys_still_verify_others_get_401(make_api: MakeApi) -> None:
    api = await make_api(jwt_jwks_ttl_s=1.0)
    assert (await api.call(api.token(KEY_1))).status_code == 200
    api.jwks.down = True
    failed = fetches("failed")
    await asyncio.sleep(1.1)  # the cache is past its TTL: the next call tries to fetch
    assert (await api.call(api.token(KEY_1))).status_code == 200  # the held key still works
    assert fetches("failed") == failed + 1  # the failure is metered (and logged)
    await asyncio.sleep(0.35)
    unavailable = rejected("keys_unavailable")
    refused(await api.call(api.token(KEY_2)))  # a key never seen: 401, not 500
    assert rejected("keys_unavailable") == unavailable + 1
    api.jwks.down, api.jwks.keys = False, [KEY_1, KEY_2]
    await asyncio.sleep(0.35)
    assert (await api.call(api.token(KEY_2))).status_code == 200  # back: found again


async def test_a_hung_jwks_endpoint_costs_one_timeout_and_no_500(make_api: MakeApi) -> None:
    api = await make_api(jwt_jwks_ttl_s=1.0, jwt_jwks_timeout_s=0.5)
    assert (await api.call(api.token(KEY_1))).status_code == 200
    api.jwks.delay_s = 3.0
    await asyncio.sleep(1.1)
    loop = asyncio.get_running_loop()
    started = loop.time()
    # The first call waits for the fetch (and its time limit), the held key then verifies.
    assert (await api.call(api.token(KEY_1))).status_code == 200
    assert loop.time() - started < 2.5
    await asyncio.sleep(0.35)
    refused(await api.call(api.token(KEY_2)))


async def test_keys_held_too_long_without_a_good_fetch_are_dropped(make_api: MakeApi) -> None:
    api = await make_api(jwt_jwks_ttl_s=1.0, jwt_jwks_max_stale_s=1.5)
    assert (await api.call(api.token(KEY_1))).status_code == 200
    api.jwks.down = True
    await asyncio.sleep(1.6)
    refused(await api.call(api.token(KEY_1)))


async def test_a_flood_of_unknown_kids_fetches_the_jwks_at_most_once_per_interval(
    make_api: MakeApi,
) -> None:
    api = await make_api(jwt_jwks_min_refresh_s=30.0)
    assert (await api.call(api.token(KEY_1))).status_code == 200
    assert api.jwks.hits == 1
    flood = [api.token(KEY_1, kid=f"made-up-{i}") for i in range(200)]
    answers = await asyncio.gather(*(api.call(t) for t in flood))
    assert {r.status_code for r in answers} == {401}
    assert api.jwks.hits == 1  # none of the 200 made the cache fetch again within 30 s
    assert (await api.call(api.token(KEY_1))).status_code == 200


async def test_unusable_keys_in_the_jwks_are_not_used(make_api: MakeApi) -> None:
    api = await make_api()
    wrong_alg = {**KEY_1.public_jwk(), "alg": "RS512"}
    encryption = {**KEY_2.public_jwk(), "use": "enc"}
    secret = {"kty": "oct", "kid": "shared", "k": _b64(b"s" * 32), "alg": "HS256"}
    api.jwks.document = {"keys": [wrong_alg, encryption, secret, STRANGER.public_jwk()]}
    refused(await api.call(api.token(KEY_1)))
    await asyncio.sleep(0.35)
    refused(await api.call(api.token(KEY_2)))
    # An HS256 token naming the JWKS's symmetric key is not verified with it.
    hs = jwt.encode(api.claims(), b"s" * 32, algorithm="HS256", headers={"kid": "shared"})
    refused(await api.call(hs))
    assert (await api.call(api.token(STRANGER))).status_code == 200
