"""A development key pair that signs tokens as CommDesk's identity service does (RS256).

`commdesk-billing dev` (and the demo's stack) makes a fresh pair at start, writes the private
key where `BILLING_DEV_JWT_KEY_FILE` says (readable by this user only) and serves the public
half as a JWKS (`jwks_app`) that the stack's API is pointed at. Tests make their own pairs.
Production never loads one (the setting is refused there).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

JWKS_PATH = "/.well-known/jwks.json"


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private_key: rsa.RSAPrivateKey

    @classmethod
    def generate(cls, bits: int = 2048) -> SigningKey:
        key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        return cls(kid=thumbprint(key.public_key()), private_key=key)

    def public_jwk(self) -> dict[str, str]:
        numbers = self.private_key.public_key().public_numbers()
        return {
            "kty": "RSA",
            "kid": self.kid,
            "use": "sig",
            "alg": "RS256",
            "n": _b64(numbers.n),
            "e": _b64(numbers.e),
        }

    def public_pem(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def save(self, path: Path) -> Path:
        """Written anew (0600): a fresh pair per start replaces the last one. Returns the
        file's absolute path."""
        path.parent.mkdir(parents=True, exist_ok=True)
        pem = self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        return tmp.replace(path).resolve()


def load(path: str) -> SigningKey:
    """The key in `path` (re-read when the file changes: each start writes a new pair)."""
    stat = os.stat(path)
    return _load(path, stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=4)
def _load(path: str, _mtime_ns: int, _size: int) -> SigningKey:
    key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("BILLING_DEV_JWT_KEY_FILE must hold an RSA private key")
    return SigningKey(kid=thumbprint(key.public_key()), private_key=key)


def thumbprint(key: rsa.RSAPublicKey) -> str:
    """The RFC 7638 thumbprint (SHA-256, base64url): a kid that names the key itself."""
    numbers = key.public_numbers()
    canonical = json.dumps(
        {"e": _b64(numbers.e), "kty": "RSA", "n": _b64(numbers.n)},
        separators=(",", ":"),
        sort_keys=True,
    )
    return (
        base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).decode().rstrip("=")
    )


def jwks(*keys: SigningKey) -> dict[str, Any]:
    return {"keys": [k.public_jwk() for k in keys]}


def jwks_app(*keys: SigningKey) -> Starlette:
    """Serves the public keys at JWKS_PATH, as CommDesk's identity service does."""
    document = jwks(*keys)

    async def serve(request: Request) -> JSONResponse:
        return JSONResponse(document, headers={"cache-control": "max-age=300"})

    return Starlette(routes=[Route(JWKS_PATH, serve)])


def _b64(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8 or 1, "big")
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")
