"""Secrets at rest that we must read back: payees' bank account numbers (issue 14).

An account number is stored *sealed* — AES-256-GCM under a key from the environment, never
the database — with a fingerprint (HMAC-SHA256 under another key) to find the same account
again without opening anything, and is shown only masked. The sealed form names its key
(`v1.<key id>.<nonce + ciphertext>`), so keys rotate: new seals use the current key, old
ones still open with the key they name, and a re-seal moves them over.

The account's owner is bound in as associated data: a sealed number copied onto another
payee's row does not open there.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from commdesk_billing.config import Settings

_VERSION = "v1"
_KEY_ID = re.compile(r"^[a-z0-9_-]{1,16}$")
_NONCE_BYTES = 12


class SealError(Exception):
    """A sealed value that cannot be opened: unknown key, altered, or another owner's."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def parse_key(text: str) -> bytes:
    """A key as configured: 32 bytes, base64 (standard or URL-safe)."""
    try:
        raw = base64.b64decode(text, altchars=b"-_", validate=False)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("a key is 32 bytes in base64") from exc
    if len(raw) != 32:
        raise ValueError(f"a key is 32 bytes in base64, not {len(raw)} bytes")
    return raw


@dataclass(frozen=True)
class KeyRing:
    """Sealing keys by id, the one new seals use, and the fingerprint key."""

    keys: dict[str, bytes]
    current: str
    fingerprint_key: bytes

    def __post_init__(self) -> None:
        if self.current not in self.keys:
            raise ValueError(f"the current key {self.current!r} is not among the keys")
        for key_id, key in self.keys.items():
            if not _KEY_ID.match(key_id) or len(key) != 32:
                raise ValueError(f"key {key_id!r}: ids are 1-16 of a-z 0-9 _ -, keys 32 bytes")
        if len(self.fingerprint_key) != 32:
            raise ValueError("the fingerprint key is 32 bytes")

    def seal(self, plaintext: str, *, owner: str) -> str:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = AESGCM(self.keys[self.current]).encrypt(nonce, plaintext.encode(), owner.encode())
        return f"{_VERSION}.{self.current}.{_b64(nonce + sealed)}"

    def open(self, token: str, *, owner: str) -> str:
        try:
            version, key_id, body = token.split(".")
            if version != _VERSION:
                raise ValueError(f"version {version}")
            key = self.keys[key_id]
            raw = _unb64(body)
            plain = AESGCM(key).decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], owner.encode())
        except KeyError as exc:
            raise SealError("sealed with a key this process does not have") from exc
        except (ValueError, binascii.Error, InvalidTag) as exc:
            raise SealError("not a sealed value of this owner, or altered") from exc
        return plain.decode()

    def needs_reseal(self, token: str) -> bool:
        """Sealed under an older key: open and seal again to finish a rotation."""
        return not token.startswith(f"{_VERSION}.{self.current}.")

    def fingerprint(self, plaintext: str) -> str:
        """The same account gives the same fingerprint (to refuse it twice, to see it
        changed), and nothing about the number without the key."""
        return hmac.new(self.fingerprint_key, plaintext.encode(), hashlib.sha256).hexdigest()


def mask(account_number: str) -> str:
    """What any screen, log or answer shows: the last four, the rest hidden."""
    digits = account_number.strip()
    if len(digits) <= 4:
        return "X" * len(digits)
    return "X" * (len(digits) - 4) + digits[-4:]


def key_ring(settings: Settings) -> KeyRing:
    """The configured ring; a ValueError that names what is missing or malformed (the
    values themselves are never in the message)."""
    if (
        settings.payout_account_keys is None
        or settings.payout_account_key_id is None
        or settings.payout_fingerprint_key is None
    ):
        raise ValueError(
            "BILLING_PAYOUT_ACCOUNT_KEYS, BILLING_PAYOUT_ACCOUNT_KEY_ID and "
            "BILLING_PAYOUT_FINGERPRINT_KEY must all be set to store payout accounts"
        )
    try:
        raw = json.loads(settings.payout_account_keys.get_secret_value())
        if not isinstance(raw, dict) or not raw:
            raise ValueError("not an object")
        keys = {str(k): parse_key(str(v)) for k, v in raw.items()}
    except (ValueError, TypeError) as exc:
        raise ValueError(
            'BILLING_PAYOUT_ACCOUNT_KEYS must be {"<key id>": "<32 bytes, base64>", ...}'
        ) from exc
    fingerprint = parse_key(settings.payout_fingerprint_key.get_secret_value())
    return KeyRing(keys=keys, current=settings.payout_account_key_id, fingerprint_key=fingerprint)
