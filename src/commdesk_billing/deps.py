"""FastAPI dependencies shared by the routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.exceptions import HTTPException

from commdesk_billing.config import Settings
from commdesk_billing.errors import IdempotencyKeyInvalid, IdempotencyKeyRequired
from commdesk_billing.idempotency.keys import KEY_RE
from commdesk_billing.security.jwt import InvalidToken, Principal, decode_token

_bearer = HTTPBearer(auto_error=False, description="JWT issued by CommDesk")


def engine(request: Request) -> AsyncEngine:
    eng: AsyncEngine = request.app.state.engine
    return eng


def settings(request: Request) -> Settings:
    cfg: Settings = request.app.state.settings
    return cfg


async def principal(
    request: Request,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    challenge = {"WWW-Authenticate": 'Bearer realm="commdesk-billing"'}
    if creds is None or creds.scheme.lower() != "bearer":
        raise HTTPException(401, "a bearer token is required", headers=challenge)
    try:
        return decode_token(request.app.state.settings, creds.credentials)
    except InvalidToken as exc:
        raise HTTPException(401, f"token rejected: {exc}", headers=challenge) from exc


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
