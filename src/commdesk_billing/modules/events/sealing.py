"""Endpoint signing secrets at rest: sealed with Fernet (AES-128-CBC + HMAC-SHA256) under
keys from the environment (BILLING_WEBHOOK_SECRET_KEYS), never stored in the clear.

A secret must be usable to sign, so it is kept (sealed), not hashed. A database dump alone
gives no secret; the key lives in the process's environment only. The first key seals; any
listed key opens (`MultiFernet`), so a key is rotated by putting the new one first.
"""

from __future__ import annotations

import secrets

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from commdesk_billing.config import Environment, Settings

# Development and tests only (refused in production, where no key means no endpoints).
DEV_KEY = "ZGV2LW9ubHktd2ViaG9vay1zZWFsaW5nLWtleS0wMDA="
SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret


class SealingUnavailable(Exception):
    """No sealing key in production (BILLING_WEBHOOK_SECRET_KEYS unset), or a sealed
    secret no configured key opens."""


def _box(settings: Settings) -> MultiFernet:
    raw = settings.webhook_secret_keys.get_secret_value() if settings.webhook_secret_keys else ""
    keys = [k.strip() for k in raw.split(",") if k.strip()]
    if not keys:
        if settings.env is Environment.production:
            raise SealingUnavailable("BILLING_WEBHOOK_SECRET_KEYS is not set")
        keys = [DEV_KEY]
    if settings.env is Environment.production and DEV_KEY in keys:
        raise SealingUnavailable("the development sealing key is refused in production")
    try:
        return MultiFernet([Fernet(k) for k in keys])
    except ValueError as exc:
        raise SealingUnavailable(
            "BILLING_WEBHOOK_SECRET_KEYS holds a key that is not Fernet"
        ) from exc


def new_secret() -> str:
    """A signing secret: 32 random bytes, urlsafe base64, with a recognisable prefix."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def seal(settings: Settings, secret: str) -> str:
    return _box(settings).encrypt(secret.encode()).decode()


def open_sealed(settings: Settings, sealed: str) -> str:
    try:
        return _box(settings).decrypt(sealed.encode()).decode()
    except InvalidToken as exc:
        raise SealingUnavailable("no configured key opens this endpoint's secret") from exc
