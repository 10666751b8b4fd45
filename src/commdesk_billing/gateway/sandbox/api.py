"""The gate every API call passes (`/pg`, `/payout`, `/verification`): latency, credentials,
version, rate limit, injected 5xx, body parsing, idempotency; then Cashfree's response
headers on whatever comes back.

Checks run in that order: wrong credentials learn nothing else (401 before a version
complaint), and a call refused by the rate limit or an injected 5xx has done nothing, so it
is not stored under its idempotency key. A `Realm` says what differs between Cashfree's
products: which credentials, which versions, whose faults, which error body.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import Response

from commdesk_billing.gateway.sandbox.config import SandboxConfig
from commdesk_billing.gateway.sandbox.errors import CashfreeError, error_body
from commdesk_billing.gateway.sandbox.idempotency import IdempotencyStore, fingerprint
from commdesk_billing.gateway.sandbox.ratelimit import Endpoint, RateLimiter
from commdesk_billing.gateway.sandbox.service import Sandbox
from commdesk_billing.gateway.sandbox.wire import dumps, loads

ACCEPTED_VERSIONS = frozenset({"2023-08-01", "2025-01-01", "2026-01-01"})
PAYOUT_VERSIONS = frozenset({"2024-01-01"})


class CallFaults(Protocol):
    latency_ms: int
    error_rate: float


@dataclass(frozen=True, slots=True)
class Realm:
    # None: `x-api-version` is not asked for (Secure ID's verification API).
    versions: frozenset[str] | None
    default_version: str
    payouts: bool  # the Payouts app's credentials and faults, and `ErrorV2` bodies

    def faults(self, sandbox: Sandbox) -> CallFaults:
        return sandbox.payouts.faults if self.payouts else sandbox.faults

    def before(self, sandbox: Sandbox) -> None:
        if self.payouts:
            sandbox.payouts.tick()  # what fell due is seen by this very call


PG = Realm(ACCEPTED_VERSIONS, "2025-01-01", payouts=False)
PAYOUT = Realm(PAYOUT_VERSIONS, "2024-01-01", payouts=True)
VERIFICATION = Realm(None, "2024-01-01", payouts=True)


@dataclass(slots=True)
class Call:
    request: Request
    sandbox: Sandbox
    body: Any
    app_id: str | None

    def param(self, name: str) -> str:
        return str(self.request.path_params[name])


@dataclass(slots=True)
class Reply:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Call], Reply | Awaitable[Reply]]


class Gate:
    def __init__(self, config: SandboxConfig, sandbox: Sandbox) -> None:
        self.config = config
        self.sandbox = sandbox
        self.limiter = RateLimiter(config.rate_limit_profile, config.rate_limit_multiplier)
        self.idempotency = IdempotencyStore(config.idempotency_ttl_s)

    def credentials_ok(self, request: Request, *, payouts: bool = False) -> bool:
        """The PG app's pair, or with `payouts` the Payouts app's (verification takes it too)."""
        config = self.config
        want_id, want_secret = (
            (config.payout_client_id, config.payout_client_secret)
            if payouts
            else (config.client_id, config.client_secret)
        )
        # Constant-time compare: the sandbox may be reachable by more than its test suite.
        given_id = request.headers.get("x-client-id", "")
        given_secret = request.headers.get("x-client-secret", "")
        id_ok = hmac.compare_digest(given_id.encode(), want_id.encode())
        secret_ok = hmac.compare_digest(given_secret.encode(), want_secret.encode())
        return id_ok and secret_ok


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps(body), status, headers=headers, media_type="application/json")


def error_response(
    status: int, code: str, message: str, headers: dict[str, str], *, with_help: bool = True
) -> Response:
    return json_response(status, error_body(status, code, message, with_help=with_help), headers)


AUTH_FAILED = "authentication Failed"


def api(
    handler: Handler,
    *,
    auth: bool = True,
    rate: Endpoint | None = None,
    idempotent: bool = False,
    realm: Realm = PG,
) -> Callable[[Request], Awaitable[Response]]:
    help_ = not realm.payouts

    def refuse(status: int, code: str, message: str, headers: dict[str, str]) -> Response:
        return error_response(status, code, message, headers, with_help=help_)

    async def endpoint(request: Request) -> Response:
        gate: Gate = request.app.state.gate
        faults = realm.faults(gate.sandbox)
        version = request.headers.get("x-api-version", "")
        known = realm.versions is None or version in realm.versions
        headers = {
            "x-request-id": request.headers.get("x-request-id") or secrets.token_hex(16),
            "x-api-version": version if known and version else realm.default_version,
        }
        if faults.latency_ms:
            await asyncio.sleep(faults.latency_ms / 1000)
        if auth and not gate.credentials_ok(request, payouts=realm.payouts):
            return refuse(401, "request_failed", AUTH_FAILED, headers)
        if realm.versions is not None and version not in realm.versions:
            return refuse(
                400,
                "version_missing",
                "x-api-version is missing or not supported; use one of "
                + ", ".join(sorted(realm.versions)),
                headers,
            )
        app_id = request.headers.get("x-client-id") if auth else None
        if rate is not None:
            client_ip = request.client.host if request.client else "unknown"
            verdict = gate.limiter.check(rate, app_id or "", client_ip)
            headers.update(verdict.headers)
            if not verdict.allowed:
                too_many = "Too many requests, please retry later"
                return refuse(429, "request_failed", too_many, headers)
        if faults.error_rate and gate.sandbox.rng.random() < faults.error_rate:
            return refuse(
                500, "internal_server_error", "internal server error (injected fault)", headers
            )
        realm.before(gate.sandbox)
        raw = await request.body()
        key = request.headers.get("x-idempotency-key")
        if not (idempotent and auth and key):
            reply = await _run(handler, request, gate, raw, app_id, help_)
            return json_response(reply.status, reply.body, headers | reply.headers)
        fp = fingerprint(request.method, request.url.path, raw)
        async with gate.idempotency.lock(app_id or "", key):
            stored = gate.idempotency.get(app_id or "", key)
            if stored is not None:
                if stored.fingerprint != fp:
                    return refuse(
                        422,
                        "request_failed",
                        "Different request body with the same idempotent key",
                        headers,
                    )
                replayed = headers | {"x-idempotency-replayed": "true"}
                return Response(stored.body, stored.status, replayed, "application/json")
            reply = await _run(handler, request, gate, raw, app_id, help_)
            body = dumps(reply.body)
            gate.idempotency.put(app_id or "", key, fp, reply.status, body)
            return Response(body, reply.status, headers | reply.headers, "application/json")

    return endpoint


async def _run(
    handler: Handler,
    request: Request,
    gate: Gate,
    raw: bytes,
    app_id: str | None,
    with_help: bool,
) -> Reply:
    try:
        body = loads(raw) if raw.strip() else None
    except ValueError:
        not_json = error_body(
            400, "request_invalid", "request body is not valid JSON", with_help=with_help
        )
        return Reply(400, not_json)
    try:
        result = handler(Call(request, gate.sandbox, body, app_id))
        return await result if not isinstance(result, Reply) else result
    except CashfreeError as exc:
        return Reply(exc.status, exc.body(with_help=with_help))
