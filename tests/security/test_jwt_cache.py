"""A verified token is remembered by its exact text, never past its expiry."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from commdesk_billing.config import Settings
from commdesk_billing.security import jwt as jwt_module
from commdesk_billing.security.jwt import InvalidToken, Role, TokenVerifier, issue_token


async def test_the_same_token_is_verified_once(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings()
    decoded: list[str] = []
    real = jwt_module._decode_exp

    def counting(*args: object) -> tuple[jwt_module.Principal, float]:
        decoded.append("x")
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(jwt_module, "_decode_exp", counting)
    verifier = TokenVerifier(settings)
    token = issue_token(settings, sub="svc-1", role=Role.service, scopes=["wallets:debit"])
    first = await verifier.verify(token)
    again = await verifier.verify(token)
    assert first == again and first.sub == "svc-1"
    assert len(decoded) == 1
    # Another token (another caller) is verified on its own.
    other = await verifier.verify(issue_token(settings, sub="svc-2", role=Role.service))
    assert other.sub == "svc-2" and len(decoded) == 2


async def test_a_remembered_token_is_refused_once_it_expires() -> None:
    settings = Settings(jwt_leeway_s=0)
    verifier = TokenVerifier(settings)
    token = issue_token(settings, sub="u-1", role=Role.member, ttl=timedelta(seconds=2))
    assert (await verifier.verify(token)).sub == "u-1"
    assert (await verifier.verify(token)).sub == "u-1"
    await asyncio.sleep(2.2)
    with pytest.raises(InvalidToken) as refused:
        await verifier.verify(token)
    assert refused.value.kind == "expired"


async def test_a_refused_token_is_not_remembered() -> None:
    settings = Settings()
    verifier = TokenVerifier(settings)
    forged = issue_token(Settings(jwt_secret="another-secret-" * 3), sub="x", role=Role.member)
    for _ in range(2):
        with pytest.raises(InvalidToken):
            await verifier.verify(forged)
