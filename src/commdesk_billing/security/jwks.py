"""CommDesk's token signing keys: its JWKS document, fetched over HTTP(S) and cached.

Keys are found by `kid`. The set is fetched again when its TTL has passed or a token names
a `kid` it does not hold (CommDesk rotated its key), but never twice within the minimum
interval: a flood of tokens with made-up kids costs the JWKS endpoint one request per
interval, per process. When a fetch fails the keys already held keep verifying (for up to
`max_stale_s` after the last good fetch); a token whose key is not held is refused (401).

Only RSA signature keys of at least 2048 bits are taken, each pinned to RS256: a key that
says another `alg`, another `use`, or carries private parts is skipped (and logged).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import structlog
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from jwt.algorithms import RSAAlgorithm

from commdesk_billing.config import Settings
from commdesk_billing.telemetry.metrics import JWKS_FETCHES

log = structlog.get_logger(__name__)

ALGORITHM = "RS256"
KID_RE = re.compile(r"^[A-Za-z0-9._:~+/=-]{1,128}\Z")
_MAX_BYTES = 256 * 1024  # a JWKS is a few KB; anything far larger is not one
_MAX_KEYS = 50
_MIN_RSA_BITS = 2048


class JwksUnavailable(Exception):
    """The JWKS could not be fetched or read (the reason is for the log)."""


@dataclass(frozen=True)
class JwksPolicy:
    url: str
    ttl_s: float
    min_refresh_s: float
    max_stale_s: float
    timeout_s: float

    @classmethod
    def of(cls, settings: Settings) -> JwksPolicy | None:
        if settings.jwt_jwks_url is None:
            return None
        return cls(
            url=settings.jwt_jwks_url,
            ttl_s=settings.jwt_jwks_ttl_s,
            min_refresh_s=settings.jwt_jwks_min_refresh_s,
            max_stale_s=settings.jwt_jwks_max_stale_s,
            timeout_s=settings.jwt_jwks_timeout_s,
        )


class KeySet:
    """The cached keys of one JWKS URL. One per process (kept on the app's state)."""

    def __init__(self, policy: JwksPolicy, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self._clock = clock
        self._keys: dict[str, RSAPublicKey] = {}
        self._fetched_at: float | None = None  # the last good fetch
        self._attempted_at: float | None = None  # the last fetch, good or not
        self._lock = asyncio.Lock()
        self.last_fetch_failed = False

    async def key(self, kid: str) -> RSAPublicKey | None:
        """The key named `kid`, fetching the set first when it is stale or lacks `kid` (and
        the minimum interval since the last fetch has passed). None: no such key is known."""
        now = self._clock()
        fresh = self._fetched_at is not None and now - self._fetched_at < self.policy.ttl_s
        held = kid in self._keys
        # A held key is not kept waiting on a fetch already under way (the JWKS endpoint
        # may be slow to fail); a kid not held waits for it, as only a fetch can find it.
        if not (fresh and held) and not (held and self._lock.locked()):
            await self._refresh()
        if self._fetched_at is None or self._clock() - self._fetched_at > self.policy.max_stale_s:
            return None  # never fetched, or too long without a good fetch: trust nothing held
        return self._keys.get(kid)

    def held_fresh(self, kid: str) -> RSAPublicKey | None:
        """The key held for `kid` while the set is fresh (no fetch due), else None: what
        `key` would answer without fetching."""
        fetched = self._fetched_at
        if fetched is None or self._clock() - fetched >= self.policy.ttl_s:
            return None
        return self._keys.get(kid)

    def _may_fetch(self) -> bool:
        last = self._attempted_at
        return last is None or self._clock() - last >= self.policy.min_refresh_s

    async def _refresh(self) -> None:
        if not self._may_fetch():
            return
        async with self._lock:
            # Requests that queued behind a fetch use its result instead of fetching again.
            if not self._may_fetch():
                return
            self._attempted_at = self._clock()
            try:
                keys = await self._fetch()
            except JwksUnavailable as exc:
                self.last_fetch_failed = True
                JWKS_FETCHES.labels("failed").inc()
                log.warning("jwt.jwks.fetch_failed", reason=str(exc), held=len(self._keys))
                return
            self.last_fetch_failed = False
            JWKS_FETCHES.labels("ok").inc()
            added, removed = set(keys) - set(self._keys), set(self._keys) - set(keys)
            if added or removed:
                log.info("jwt.jwks.keys_changed", added=sorted(added), removed=sorted(removed))
            self._keys, self._fetched_at = keys, self._clock()

    async def _fetch(self) -> dict[str, RSAPublicKey]:
        try:
            # The whole fetch, not each read: a server dripping bytes cannot hold it open.
            async with (
                asyncio.timeout(self.policy.timeout_s),
                httpx.AsyncClient(timeout=self.policy.timeout_s, follow_redirects=False) as client,
                client.stream(
                    "GET", self.policy.url, headers={"accept": "application/json"}
                ) as answer,
            ):
                if answer.status_code != 200:
                    raise JwksUnavailable(f"the JWKS endpoint answered {answer.status_code}")
                body = bytearray()
                async for chunk in answer.aiter_bytes():
                    body += chunk
                    if len(body) > _MAX_BYTES:
                        raise JwksUnavailable("the JWKS document is too large")
        except (httpx.HTTPError, TimeoutError) as exc:
            raise JwksUnavailable(
                f"the JWKS endpoint is unreachable ({type(exc).__name__})"
            ) from exc
        try:
            doc = json.loads(bytes(body))
        except ValueError as exc:
            raise JwksUnavailable("the JWKS document is not JSON") from exc
        return parse_jwks(doc)


def parse_jwks(doc: Any) -> dict[str, RSAPublicKey]:
    """The usable keys of a JWKS document by kid. None usable: JwksUnavailable (the keys
    held are kept rather than replaced by nothing)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        raise JwksUnavailable("the JWKS document has no `keys` list")
    keys: dict[str, RSAPublicKey] = {}
    for jwk in doc["keys"][:_MAX_KEYS]:
        try:
            kid, key = _usable(jwk)
        except ValueError as exc:
            log.warning("jwt.jwks.key_skipped", reason=str(exc))
            continue
        if kid in keys:
            log.warning("jwt.jwks.key_skipped", reason="duplicate kid", kid=kid)
            continue
        keys[kid] = key
    if not keys:
        raise JwksUnavailable("the JWKS document has no usable RS256 key")
    return keys


def _usable(jwk: Any) -> tuple[str, RSAPublicKey]:
    if not isinstance(jwk, dict):
        raise ValueError("a key is not an object")
    kid = jwk.get("kid")
    if not isinstance(kid, str) or not KID_RE.match(kid):
        raise ValueError("a key has no usable kid")
    if jwk.get("kty") != "RSA":
        raise ValueError(f"key {kid}: not an RSA key")
    if jwk.get("alg", ALGORITHM) != ALGORITHM:
        raise ValueError(f"key {kid}: its alg is not {ALGORITHM}")
    if jwk.get("use", "sig") != "sig":
        raise ValueError(f"key {kid}: not a signature key")
    ops = jwk.get("key_ops")
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        raise ValueError(f"key {kid}: key_ops do not include verify")
    if "d" in jwk:
        raise ValueError(f"key {kid}: a private key in a public key set")
    try:
        key = RSAAlgorithm.from_jwk(jwk)
    except Exception as exc:  # PyJWT raises several kinds for a malformed key
        raise ValueError(f"key {kid}: not a valid RSA public key") from exc
    if not isinstance(key, RSAPublicKey):
        raise ValueError(f"key {kid}: not an RSA public key")
    if key.key_size < _MIN_RSA_BITS:
        raise ValueError(f"key {kid}: shorter than {_MIN_RSA_BITS} bits")
    return kid, key
