"""The Redis store against the real server: keys under the run's prefix, a remembered outage."""

from __future__ import annotations

import socket

import pytest

from commdesk_billing.config import Settings
from commdesk_billing.kv.store import RedisStore, RedisUnavailable


async def test_call_and_prefix(settings: Settings) -> None:
    store = RedisStore.from_settings(settings)
    try:
        key = store.key("probe", "one")
        assert key.startswith(settings.redis_key_prefix)
        assert await store.call("test", lambda r: r.set(key, b"1", ex=60))
        assert await store.call("test", lambda r: r.get(key)) == b"1"
        assert await store.ping()
    finally:
        await store.aclose()


async def test_outage_is_remembered_then_retried() -> None:
    # A port nothing listens on: connection refused, like a Redis that is down.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    now = [100.0]
    store = RedisStore(
        f"redis://127.0.0.1:{port}/0", prefix="x:", retry_after_s=5.0, clock=lambda: now[0]
    )
    calls = 0

    async def work(r: object) -> int:
        nonlocal calls
        calls += 1
        return await store.client.incr("x:n")

    try:
        with pytest.raises(RedisUnavailable):
            await store.call("test", work)
        assert not store.believed_up
        # Remembered: the next call fails at once, without trying the network.
        with pytest.raises(RedisUnavailable):
            await store.call("test", work)
        assert calls == 1
        now[0] += 5.0
        assert store.believed_up
        with pytest.raises(RedisUnavailable):
            await store.call("test", work)
        assert calls == 2
        assert not await store.ping()
    finally:
        await store.aclose()


def test_redis_url_must_be_redis() -> None:
    with pytest.raises(ValueError, match="BILLING_REDIS_URL"):
        Settings(redis_url="ftp://x")  # type: ignore[arg-type]
