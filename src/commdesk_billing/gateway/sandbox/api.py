"""The gate every `/pg` API call passes: latency, credentials, version, rate limit, injected
5xx, body parsing, idempotency; then Cashfree's response headers on whatever comes back.

Checks run in that order: wrong credentials learn nothing else (401 before a version
complaint), and a call refused by the rate limit or an injected 5xx has done nothing, so it
is not stored under its idempotency key.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from commdesk_billing.gateway.sandbox.config import SandboxConfig
from commdesk_billing.gateway.sandbox.errors import CashfreeError, error_body
from commdesk_billing.gateway.sandbox.idempotency import IdempotencyStore, fingerprint
from commdesk_billing.gateway.sandbox.ratelimit import Endpoint, RateLimiter
from commdesk_billing.gateway.sandbox.service import Sandbox
from commdesk_billing.gateway.sandbox.wire import dumps, loads

ACCEPTED_VERSIONS = frozenset({"2023-08-01", "2025-01-01", "2026-01-01"})


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

    def credentials_ok(self, request: Request) -> bool:
        # Constant-time compare: the sandbox may be reachable by more than its test suite.
        given_id = request.headers.get("x-client-id", "")
        given_secret = request.headers.get("x-client-secret", "")
        id_ok = hmac.compare_digest(given_id.encode(), self.config.client_id.encode())
        secret_ok = hmac.compare_digest(given_secret.encode(), self.config.client_secret.encode())
        return id_ok and secret_ok


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps(body), status, headers=headers, media_type="application/json")


def error_response(status: int, code: str, message: str, headers: dict[str, str]) -> Response:
    return json_response(status, error_body(status, code, message), headers)


AUTH_FAILED = "authentication Failed"


def api(
    handler: Handler,
    *,
    auth: bool = True,
    rate: Endpoint | None = None,
    idempotent: bool = False,
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        gate: Gate = request.app.state.gate
        faults = gate.sandbox.faults
        version = request.headers.get("x-api-version", "")
        headers = {
            "x-request-id": request.headers.get("x-request-id") or secrets.token_hex(16),
            "x-api-version": version if version in ACCEPTED_VERSIONS else "2025-01-01",
        }
        if faults.latency_ms:
            await asyncio.sleep(faults.latency_ms / 1000)
        if auth and not gate.credentials_ok(request):
            return error_response(401, "request_failed", AUTH_FAILED, headers)
        if version not in ACCEPTED_VERSIONS:
            return error_response(
                400,
                "version_missing",
                "x-api-version is missing or not supported; use one of "
                + ", ".join(sorted(ACCEPTED_VERSIONS)),
                headers,
            )
        app_id = request.headers.get("x-client-id") if auth else None
        if rate is not None:
            client_ip = request.client.host if request.client else "unknown"
            verdict = gate.limiter.check(rate, app_id or "", client_ip)
            headers.update(verdict.headers)
            if not verdict.allowed:
                return error_response(
                    429, "request_failed", "Too many requests, please retry later", headers
                )
        if faults.error_rate and gate.sandbox.rng.random() < faults.error_rate:
            return error_response(
                500, "internal_server_error", "internal server error (injected fault)", headers
            )
        raw = await request.body()
        key = request.headers.get("x-idempotency-key")
        if not (idempotent and auth and key):
            reply = await _run(handler, request, gate, raw, app_id)
            return json_response(reply.status, reply.body, headers | reply.headers)
        fp = fingerprint(request.method, request.url.path, raw)
        async with gate.idempotency.lock(app_id or "", key):
            stored = gate.idempotency.get(app_id or "", key)
            if stored is not None:
                if stored.fingerprint != fp:
                    return error_response(
                        422,
                        "request_failed",
                        "Different request body with the same idempotent key",
                        headers,
                    )
                replayed = headers | {"x-idempotency-replayed": "true"}
                return Response(stored.body, stored.status, replayed, "application/json")
            reply = await _run(handler, request, gate, raw, app_id)
            body = dumps(reply.body)
            gate.idempotency.put(app_id or "", key, fp, reply.status, body)
            return Response(body, reply.status, headers | reply.headers, "application/json")

    return endpoint


async def _run(
    handler: Handler, request: Request, gate: Gate, raw: bytes, app_id: str | None
) -> Reply:
    try:
        body = loads(raw) if raw.strip() else None
    except ValueError:
        return Reply(400, error_body(400, "request_invalid", "request body is not valid JSON"))
    try:
        result = handler(Call(request, gate.sandbox, body, app_id))
        return await result if not isinstance(result, Reply) else result
    except CashfreeError as exc:
        return Reply(exc.status, exc.body())
