"""FastAPI dependencies shared by the routers."""

from __future__ import annotations

from typing import Annotated

import structlog
from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.exceptions import HTTPException

from commdesk_billing.config import Settings
from commdesk_billing.errors import IdempotencyKeyInvalid, IdempotencyKeyRequired
from commdesk_billing.idempotency.keys import KEY_RE
from commdesk_billing.security.jwt import InvalidToken, Principal, TokenVerifier, verifier_of
from commdesk_billing.security.service_scopes import authorize_service
from commdesk_billing.telemetry.metrics import AUTH_REJECTED

log = structlog.get_logger(__name__)

_bearer = HTTPBearer(auto_error=False, description="JWT issued by CommDesk")
# Every refusal reads the same: which check failed (signature, expiry, key, audience...) is
# in the log and the metric, never in the answer, so a caller learns nothing by probing.
UNAUTHORIZED_DETAIL = "a valid bearer token is required"
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="commdesk-billing"'}


# `async def`, though they await nothing: FastAPI runs a plain `def` dependency in its thread
# pool, two thread hand-offs per request for an attribute read (a tenth of a webhook's CPU).
async def engine(request: Request) -> AsyncEngine:
    eng: AsyncEngine = request.app.state.engine
    return eng


async def settings(request: Request) -> Settings:
    cfg: Settings = request.app.state.settings
    return cfg


def token_verifier(request: Request) -> TokenVerifier:
    """The process's verifier (its JWKS cache), made on first use from the app's settings."""
    return verifier_of(request.app.state)


async def principal(
    request: Request,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if creds is None or creds.scheme.lower() != "bearer":
        AUTH_REJECTED.labels("missing").inc()
        raise HTTPException(401, UNAUTHORIZED_DETAIL, headers=CHALLENGE)
    try:
        caller = await token_verifier(request).verify(creds.credentials)
    except InvalidToken as exc:
        AUTH_REJECTED.labels(exc.kind).inc()
        log.info("auth.token_rejected", kind=exc.kind, reason=str(exc)[:300])
        raise HTTPException(401, UNAUTHORIZED_DETAIL, headers=CHALLENGE) from exc
    # A service token does only what its scopes allow, on every route (the route names the
    # scope a service needs; a route naming none is not for services).
    authorize_service(request, caller)
    return caller


async def idempotency_key(
    idempotency_key: Annotated[
        str | None,
        Header(
            description="Client-chosen key, 1-255 visible ASCII characters. The same key and "
            "body return the first answer."
        ),
    ] = None,
) -> str:
    if idempotency_key is None:
        raise IdempotencyKeyRequired("this request moves money and needs an Idempotency-Key header")
    if not KEY_RE.fullmatch(idempotency_key):
        raise IdempotencyKeyInvalid("Idempotency-Key must be 1-255 visible ASCII characters")
    return idempotency_key


Engine = Annotated[AsyncEngine, Depends(engine)]
Config = Annotated[Settings, Depends(settings)]
Caller = Annotated[Principal, Depends(principal)]
IdemKey = Annotated[str, Depends(idempotency_key)]
