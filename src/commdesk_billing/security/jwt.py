"""Bearer tokens issued by CommDesk (HS256 here; RS256/JWKS is a key-source change)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

import jwt

from commdesk_billing.config import Settings

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
    pass


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
    return jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm=_ALGORITHM)


def decode_token(settings: Settings, token: str) -> Principal:
    try:
        claims = jwt.decode(
            token,
            settings.jwt_secret.get_secret_value(),
            algorithms=[_ALGORITHM],
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            leeway=settings.jwt_leeway_s,
            options={"require": ["sub", "exp", "iss", "aud"]},
        )
    except jwt.PyJWTError as exc:
        raise InvalidToken(str(exc)) from exc
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
    return Principal(
        sub=sub,
        role=parsed_role,
        scopes=frozenset(scope.split()),
        email=email if isinstance(email, str) and len(email) <= 320 else None,
        name=name if isinstance(name, str) and len(name) <= 200 else None,
        communities=frozenset(communities),
    )
