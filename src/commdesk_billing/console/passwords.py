"""Staff passwords, hashed with the standard library's scrypt (no new dependency).

Stored as `scrypt$<log2 n>$<r>$<p>$<salt>$<hash>` (base64url), so the cost can be raised
later and old hashes still verify (`needs_rehash` says which to redo at the next sign-in).
n = 2^15, r = 8 (32 MiB, a few tens of milliseconds a try): a stolen table costs a guesser
that for every guess of every account.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

LOG2_N = 15
R = 8
P = 1
_SALT_BYTES = 16
_KEY_BYTES = 32
_MAXMEM = 64 * 1024 * 1024
MIN_LENGTH = 12
MAX_LENGTH = 1024  # scrypt takes any length; a megabyte "password" is only a way to burn CPU


class WeakPassword(ValueError):
    pass


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _derive(password: str, salt: bytes, log2_n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode(), salt=salt, n=2**log2_n, r=r, p=p, maxmem=_MAXMEM, dklen=_KEY_BYTES
    )


def check_strength(password: str) -> None:
    if not MIN_LENGTH <= len(password) <= MAX_LENGTH:
        raise WeakPassword(f"a password has {MIN_LENGTH} to {MAX_LENGTH} characters")
    if len(set(password)) < 5:
        raise WeakPassword("a password needs at least 5 different characters")


def hash_password(password: str) -> str:
    check_strength(password)
    salt = secrets.token_bytes(_SALT_BYTES)
    key = _derive(password, salt, LOG2_N, R, P)
    return f"scrypt${LOG2_N}${R}${P}${_b64(salt)}${_b64(key)}"


def verify(password: str, stored: str) -> bool:
    """Whether `password` matches; False for any malformed hash (never an exception)."""
    if len(password) > MAX_LENGTH:
        return False
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        return False
    try:
        log2_n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt, key = _unb64(parts[4]), _unb64(parts[5])
    except (ValueError, binascii.Error):
        return False
    if not (10 <= log2_n <= 20 and 1 <= r <= 32 and 1 <= p <= 4):
        return False
    try:
        derived = _derive(password, salt, log2_n, r, p)
    except (ValueError, MemoryError):
        return False
    return hmac.compare_digest(derived, key)


# Checked against when no account has the email, so an unknown email costs the same time
# as a wrong password (the answer time tells nobody which emails are staff).
DUMMY_HASH = f"scrypt${LOG2_N}${R}${P}${_b64(b'0' * _SALT_BYTES)}${_b64(b'0' * _KEY_BYTES)}"


def needs_rehash(stored: str) -> bool:
    return not stored.startswith(f"scrypt${LOG2_N}${R}${P}$")
