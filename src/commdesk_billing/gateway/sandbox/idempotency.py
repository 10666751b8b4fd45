"""Request idempotency by `x-idempotency-key` on authenticated POSTs (cashfree.md §8.3).

The first answer for a key (success or failure) is kept and replayed for the same request;
the same key with a different request is 422 `idempotency_error`. A request is its method,
path and canonical JSON body, so whitespace and key order do not make it "different".
Keys are scoped to the app id and kept for `idempotency_ttl_s`.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass

from commdesk_billing.gateway.sandbox.wire import dumps, loads


@dataclass(frozen=True, slots=True)
class Stored:
    fingerprint: str
    status: int
    body: bytes
    stored_at: float


def fingerprint(method: str, path: str, body: bytes) -> str:
    try:
        canonical = dumps(_sorted(loads(body))) if body.strip() else b""
    except (ValueError, TypeError):
        canonical = body
    return hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + canonical).hexdigest()


def _sorted(value: object) -> object:
    if isinstance(value, dict):
        return {k: _sorted(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value


class IdempotencyStore:
    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._answers: dict[tuple[str, str], Stored] = {}
        # One request per key at a time: a concurrent twin waits and then replays the answer
        # instead of doing the work a second time.
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    def lock(self, app_id: str, key: str) -> asyncio.Lock:
        return self._locks.setdefault((app_id, key), asyncio.Lock())

    def get(self, app_id: str, key: str) -> Stored | None:
        stored = self._answers.get((app_id, key))
        if stored is not None and time.monotonic() - stored.stored_at > self.ttl_s:
            del self._answers[(app_id, key)]
            return None
        return stored

    def put(self, app_id: str, key: str, fp: str, status: int, body: bytes) -> None:
        self._answers[(app_id, key)] = Stored(fp, status, body, time.monotonic())
