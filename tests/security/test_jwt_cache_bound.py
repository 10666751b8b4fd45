"""The verifier's memory of tokens is bounded, and what it answers is the token's own caller."""

from __future__ import annotations

import pytest

from commdesk_billing.config import Settings
from commdesk_billing.security import jwt as jwt_module
from commdesk_billing.security.jwt import Role, TokenVerifier, issue_token


async def test_the_memory_keeps_at_most_its_bound_and_each_token_its_own_caller(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(jwt_module, "_VERIFIED_MAX", 3)
    settings = Settings()
    verifier = TokenVerifier(settings)
    tokens = {f"u-{n}": issue_token(settings, sub=f"u-{n}", role=Role.member) for n in range(7)}
    for _ in range(2):
        for sub, token in tokens.items():
            assert (await verifier.verify(token)).sub == sub
            assert len(verifier._verified) <= 3
    # The newest are the ones kept.
    assert set(verifier._verified) == set(list(tokens.values())[-3:])
