"""Bearer tokens issued by CommDesk.

Production: RS256, verified against CommDesk's JWKS (`security/jwks.py`), the algorithm
pinned per key. Development and tests: HS256 with the shared secret too (`issue_token`),
which production refuses whatever the token says. Every refusal is an `InvalidToken` whose
message is for the log only: the caller gets one generic 401 (`deps.principal`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import jwt

from commdesk_billing.config import Environment, Settings
from commdesk_billing.security import devkeys
from commdesk_billing.security.jwks import ALGORITHM as RS256
from commdesk_billing.security.jwks import KID_RE, JwksPolicy, KeySet

_ALGORITHM = "HS256"
_SCOPE_RE = re.compile(r"^[a-z][a-z0-9_.:-]{0,63}$")
# The community id rule of modules/communities/directory.py (ID_PATTERN), for the claim.
_COMMUNITY_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}\Z")


class Role(StrEnum):
    member = "member"
    community_owner = "community_owner"
    finance_admin = "finance_admin"
    support = "support"
    auditor = "auditor"
    service = "service"  # another CommDesk service; what it may do is in its scopes
    sponsor = "sponsor"  # a company or person paying communities (sponsor payments)


class Scope(StrEnum):
    wallets_read = "wallets:read"
    wallets_debit = "wallets:debit"
    communities_spend = "communities:spend"  # spend a named member's credits in a community
    partners_attribute = "partners:attribute"  # say which partner brought a user
    usage_write = "usage:write"  # report usage events (rated and debited from wallets)
    usage_read = "usage:read"  # read any wallet's usage summary and the price book
    webhooks_manage = "webhooks:manage"  # register and manage outbound webhook endpoints
    events_read = "events:read"  # pull the public billing events (GET /v1/events)


@dataclass(frozen=True)
class Principal:
    sub: str
    role: Role
    scopes: frozenset[str]
    email: str | None = None
    name: str | None = None
    # The `communities` claim of a community_owner's token: the communities it manages.
    communities: frozenset[str] = frozenset()

    def has(self, scope: Scope) -> bool:
        return scope.value in self.scopes


class InvalidToken(Exception):
    """`kind` labels the refusal in metrics (a few fixed words); the message goes to the log."""

    def __init__(self, message: str, kind: str = "claims") -> None:
        super().__init__(message)
        self.kind = kind


def issue_token(
    settings: Settings,
    *,
    sub: str,
    role: Role,
    scopes: list[str] | None = None,
    ttl: timedelta = timedelta(hours=12),
    email: str | None = None,
    communities: list[str] | None = None,
) -> str:
    now = datetime.now(UTC)
    claims: dict[str, object] = {
        "sub": sub,
        "role": role.value,
        "scope": " ".join(scopes or []),
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "iat": now,
        "nbf": now,
        "exp": now + ttl,
    }
    if email:
        claims["email"] = email
    if communities is not None:
        claims["communities"] = communities
    if settings.dev_jwt_key_file:
        # A development stack's own key pair (its JWKS is served beside it): RS256, as
        # CommDesk signs in production.
        signer = devkeys.load(settings.dev_jwt_key_file)
        return jwt.encode(claims, signer.private_key, algorithm=RS256, headers={"kid": signer.kid})
    return jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm=_ALGORITHM)


@dataclass(frozen=True)
class _Verified:
    principal: Principal
    expires_at: float  # the token's `exp` plus the leeway, in Unix seconds
    kid: str | None  # RS256: the key that verified it, which must still be the one held
    key: Any


# Tokens verified lately, by their exact text: a service sends the same token with every
# request, and verifying it (base64, JSON, the signature, the claims) twice per request, in
# the rate limits and in the route, cost more CPU than a wallet debit's SQL. At most this many.
_VERIFIED_MAX = 10_000


class TokenVerifier:
    """Verifies bearer tokens for one process: RS256 against the JWKS (when configured), and
    HS256 with the shared secret outside production. The algorithm is chosen from the
    token's header only to pick the key source; each source accepts its one algorithm.

    A token that verified is remembered (its exact text) until it expires: the same token
    again is the same caller, so long as the key that verified it is still the one the
    JWKS holds for its kid, and the set is fresh (a rotation that removes the key refuses
    the token from the next fetch on, as before). Refusals are never remembered."""

    def __init__(
        self,
        settings: Settings,
        keys: KeySet | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        policy = JwksPolicy.of(settings)
        self.keys = keys or (KeySet(policy) if policy is not None else None)
        self.hs256 = settings.env is not Environment.production
        self._clock = clock
        self._verified: dict[str, _Verified] = {}

    async def verify(self, token: str) -> Principal:
        known = self._verified.get(token)
        if known is not None:
            if self._clock() < known.expires_at and (
                known.kid is None
                or (self.keys is not None and self.keys.held_fresh(known.kid) is known.key)
            ):
                return known.principal
            del self._verified[token]
        principal, exp, kid, key = await self._verify(token)
        if len(self._verified) >= _VERIFIED_MAX:
            # The oldest remembered first (a dict keeps insertion order).
            del self._verified[next(iter(self._verified))]
        self._verified[token] = _Verified(principal, exp + self.settings.jwt_leeway_s, kid, key)
        return principal

    async def _verify(self, token: str) -> tuple[Principal, float, str | None, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"malformed token: {exc}", "malformed") from exc
        alg = header.get("alg")
        if alg == RS256:
            if self.keys is None:
                raise InvalidToken("an RS256 token, and no JWKS URL is configured", "algorithm")
            kid = header.get("kid")
            if not isinstance(kid, str) or not KID_RE.match(kid):
                raise InvalidToken("an RS256 token without a usable kid", "unknown_kid")
            key = await self.keys.key(kid)
            if key is None:
                kind = "keys_unavailable" if self.keys.last_fetch_failed else "unknown_kid"
                raise InvalidToken(f"no key {kid!r} in the JWKS", kind)
            principal, exp = _decode_exp(self.settings, token, key, RS256)
            return principal, exp, kid, key
        if alg == _ALGORITHM and self.hs256:
            secret = self.settings.jwt_secret.get_secret_value()
            principal, exp = _decode_exp(self.settings, token, secret, alg)
            return principal, exp, None, None
        # `none`, HS256 in production, and anything else.
        raise InvalidToken(f"algorithm {str(alg)[:20]!r} is not accepted", "algorithm")


def decode_token(settings: Settings, token: str) -> Principal:
    """A development HS256 token (the request path uses `TokenVerifier`). Refused in
    production, where HS256 is never accepted."""
    if settings.env is Environment.production:
        raise InvalidToken("HS256 tokens are not accepted in production", "algorithm")
    return _decode(settings, token, settings.jwt_secret.get_secret_value(), _ALGORITHM)


def _decode(settings: Settings, token: str, key: Any, algorithm: str) -> Principal:
    return _decode_exp(settings, token, key, algorithm)[0]


def _decode_exp(
    settings: Settings, token: str, key: Any, algorithm: str
) -> tuple[Principal, float]:
    """The token's caller, and its `exp` (Unix seconds)."""
    try:
        claims = jwt.decode(
            token,
            key,
            # Pinned: the key source decides the one algorithm, never the token.
            algorithms=[algorithm],
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            leeway=settings.jwt_leeway_s,
            options={"require": ["sub", "exp", "iss", "aud"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise InvalidToken(str(exc), "expired") from exc
    except jwt.InvalidSignatureError as exc:
        raise InvalidToken(str(exc), "signature") from exc
    except jwt.PyJWTError as exc:
        raise InvalidToken(str(exc), "claims") from exc
    sub, role, scope = claims.get("sub"), claims.get("role"), claims.get("scope", "")
    if not isinstance(sub, str) or not 1 <= len(sub) <= 200 or not sub.isprintable():
        raise InvalidToken("sub must be a printable string of 1 to 200 characters")
    try:
        parsed_role = Role(str(role))
    except ValueError as exc:
        raise InvalidToken("unknown role") from exc
    if not isinstance(scope, str) or not all(_SCOPE_RE.match(s) for s in scope.split()):
        raise InvalidToken("scope must be a space-separated list of scope names")
    email = claims.get("email")
    name = claims.get("name")
    communities = claims.get("communities", [])
    if (
        not isinstance(communities, list)
        or len(communities) > 1000
        or not all(isinstance(c, str) and _COMMUNITY_RE.match(c) for c in communities)
    ):
        raise InvalidToken("communities must be a list of at most 1000 community ids")
    principal = Principal(
        sub=sub,
        role=parsed_role,
        scopes=frozenset(scope.split()),
        email=email if isinstance(email, str) and len(email) <= 320 else None,
        name=name if isinstance(name, str) and len(name) <= 200 else None,
        communities=frozenset(communities),
    )
    return principal, float(claims["exp"])


def verifier_of(state: Any) -> TokenVerifier:
    """The process's verifier (its JWKS cache) kept on an app's state, made on first use
    from the state's settings: one per app, shared by the routes and the rate limits."""
    verifier: TokenVerifier | None = getattr(state, "token_verifier", None)
    if verifier is None or verifier.settings is not state.settings:
        verifier = TokenVerifier(state.settings)
        state.token_verifier = verifier
    return verifier
