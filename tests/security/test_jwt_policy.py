"""Which tokens and JWKS locations each environment accepts (no server needed: production
refuses HS256 before any key is looked for)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jwt
import pytest
from pydantic import ValidationError

from commdesk_billing.config import Environment, Settings
from commdesk_billing.security import devkeys
from commdesk_billing.security.jwks import JwksUnavailable, parse_jwks
from commdesk_billing.security.jwt import (
    InvalidToken,
    Role,
    TokenVerifier,
    decode_token,
    issue_token,
)
from commdesk_billing.stack import dev_identity

PRODUCTION: dict[str, Any] = {
    "env": Environment.production,
    "database_url": "postgresql://u:p@db.example/x?sslmode=require",
    "cashfree_client_secret": "cfsk_ma_prod_" + "s" * 30,
    "cashfree_base_url": "https://api.cashfree.com/pg",
    "public_base_url": "https://billing.example",
    "seller_gstin": "29ABCDE1234F1Z5",
    "jwt_jwks_url": "https://id.commdesk.example/.well-known/jwks.json",
}


async def test_production_refuses_hs256_whatever_the_secret() -> None:
    secret = "p" * 40
    prod = Settings(**PRODUCTION, jwt_secret=secret)
    dev = Settings(jwt_secret=secret)
    token = issue_token(dev, sub="u-1", role=Role.finance_admin)
    assert (await TokenVerifier(dev).verify(token)).role is Role.finance_admin
    with pytest.raises(InvalidToken) as refused:
        await TokenVerifier(prod).verify(token)
    assert refused.value.kind == "algorithm"
    with pytest.raises(InvalidToken):
        decode_token(prod, token)


async def test_rs256_without_a_jwks_url_is_refused() -> None:
    key = devkeys.SigningKey.generate()
    dev = Settings()
    claims = {"sub": "u", "role": "member", "iss": dev.jwt_issuer, "aud": dev.jwt_audience}
    token = jwt.encode(
        {**claims, "exp": 4_000_000_000}, key.private_key, "RS256", headers={"kid": key.kid}
    )
    with pytest.raises(InvalidToken) as refused:
        await TokenVerifier(dev).verify(token)
    assert refused.value.kind == "algorithm"


@pytest.mark.parametrize(
    ("env", "url", "ok"),
    [
        (Environment.production, "https://id.example/.well-known/jwks.json", True),
        (Environment.production, "http://id.example/.well-known/jwks.json", False),
        (Environment.production, "http://127.0.0.1:9000/.well-known/jwks.json", False),
        (Environment.development, "http://127.0.0.1:9000/.well-known/jwks.json", True),
        (Environment.test, "http://localhost:9000/jwks", True),
        (Environment.development, "http://[::1]:9000/jwks", True),
        (Environment.development, "http://id.example/jwks", False),
        (Environment.development, "http://10.0.0.5/jwks", False),
        (Environment.development, "ftp://127.0.0.1/jwks", False),
    ],
)
def test_the_jwks_is_fetched_over_https_or_from_loopback_outside_production(
    env: Environment, url: str, ok: bool
) -> None:
    fields = {**PRODUCTION, "jwt_jwks_url": url} if env is Environment.production else {}
    make = lambda: Settings(**{**fields, "env": env, "jwt_jwks_url": url})  # noqa: E731
    if ok:
        assert make().jwt_jwks_url == url
    else:
        with pytest.raises(ValidationError, match=r"(?i)JWT_JWKS_URL"):
            make()


def test_production_refuses_a_development_key_file(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="DEV_JWT_KEY_FILE"):
        Settings(**PRODUCTION, dev_jwt_key_file=str(tmp_path / "k.pem"))


async def test_a_development_key_file_makes_issue_token_sign_rs256(tmp_path: Path) -> None:
    key = devkeys.SigningKey.generate()
    key.save(tmp_path / "dev.pem")
    assert (tmp_path / "dev.pem").stat().st_mode & 0o777 == 0o600
    s = Settings(dev_jwt_key_file=str(tmp_path / "dev.pem"))
    token = issue_token(s, sub="u-1", role=Role.member)
    assert jwt.get_unverified_header(token) == {"alg": "RS256", "typ": "JWT", "kid": key.kid}
    claims = jwt.decode(token, key.private_key.public_key(), ["RS256"], audience=s.jwt_audience)
    assert claims["sub"] == "u-1"


def test_a_jwks_without_a_usable_key_is_not_taken() -> None:
    key = devkeys.SigningKey.generate()
    private = {**key.public_jwk(), "d": "AQAB"}
    for doc in ({}, {"keys": "x"}, {"keys": [private]}, {"keys": [{"kty": "oct", "k": "x"}]}):
        with pytest.raises(JwksUnavailable):
            parse_jwks(doc)
    assert set(parse_jwks(devkeys.jwks(key))) == {key.kid}


async def test_the_development_identity_serves_the_key_issue_token_signs_with(
    tmp_path: Path,
) -> None:
    """What `commdesk-billing dev` and the demo's stack run: a fresh key pair, its JWKS on a
    loopback port; tokens minted with the key file verify against that JWKS."""
    async with dev_identity(tmp_path / "dev-jwt-key.pem") as env:
        minted = Settings(dev_jwt_key_file=env["BILLING_DEV_JWT_KEY_FILE"])
        token = issue_token(minted, sub="u-dev", role=Role.support)
        verifier = TokenVerifier(Settings(jwt_jwks_url=env["BILLING_JWT_JWKS_URL"]))
        caller = await verifier.verify(token)
        assert (caller.sub, caller.role) == ("u-dev", Role.support)
        assert jwt.get_unverified_header(token)["alg"] == "RS256"
