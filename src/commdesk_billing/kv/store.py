"""Redis, as production runs it (Upstash over `rediss://`): one pooled client per process,
short timeouts, and a remembered outage.

Nothing here holds money or a fact of record: Redis keeps counters and sliding windows
(rate limits, fraud velocity) that make a decision quicker, and every caller has a way to
decide without it (a local limiter, SQL counts). So a Redis that is down or slow must cost a
request at most one short timeout, and then nothing at all for `retry_after_s`: `call` raises
`RedisUnavailable` at once while the outage is remembered, and the callers take their
fallback.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from commdesk_billing.config import Settings
from commdesk_billing.telemetry.metrics import REDIS_FALLBACKS

log = structlog.get_logger(__name__)

T = TypeVar("T")


class RedisUnavailable(Exception):
    """Redis did not answer (down, slow, refused): take the fallback."""


class RedisStore:
    def __init__(
        self,
        url: str,
        *,
        prefix: str = "",
        timeout_s: float = 0.25,
        pool_size: int = 50,
        retry_after_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.prefix = prefix
        self.retry_after_s = retry_after_s
        self._clock = clock
        self._down_until = 0.0
        self.client: Redis = Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            max_connections=pool_size,
            # A connection idle past this is pinged before use (Upstash closes idle ones).
            health_check_interval=30,
            decode_responses=False,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> RedisStore:
        return cls(
            settings.redis_url.get_secret_value(),
            prefix=settings.redis_key_prefix,
            timeout_s=settings.redis_timeout_s,
            pool_size=settings.redis_pool_size,
            retry_after_s=settings.redis_retry_after_s,
        )

    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    @property
    def believed_up(self) -> bool:
        return self._clock() >= self._down_until

    async def call(self, purpose: str, work: Callable[[Redis], Awaitable[T]]) -> T:
        """Run `work` against Redis, or raise `RedisUnavailable` (at once while an outage
        is remembered). `purpose` labels the fallback metric: bounded names only."""
        if not self.believed_up:
            REDIS_FALLBACKS.labels(purpose).inc()
            raise RedisUnavailable("redis is remembered down")
        try:
            return await work(self.client)
        except (RedisError, OSError, TimeoutError) as exc:
            self._down_until = self._clock() + self.retry_after_s
            REDIS_FALLBACKS.labels(purpose).inc()
            log.warning("redis.unavailable", purpose=purpose, error=type(exc).__name__)
            await self._drop_idle_connections()
            raise RedisUnavailable(type(exc).__name__) from exc

    async def _drop_idle_connections(self) -> None:
        # A server that went away took every pooled connection with it. Left in the pool,
        # each would fail once after Redis is back, and each failure would start another
        # remembered outage: a restart would be paid for once per idle connection.
        with contextlib.suppress(RedisError, OSError):
            await self.client.connection_pool.disconnect(inuse_connections=False)

    async def ping(self) -> bool:
        """For `/readyz`: always asks (a remembered outage is not an answer)."""
        try:
            return bool(await self.client.ping())
        except (RedisError, OSError, TimeoutError):
            return False

    async def delete_prefix(self) -> int:
        """Every key under this store's prefix (a test run's cleanup); never used with ''."""
        if not self.prefix:
            raise ValueError("refusing to delete every key of the server")
        removed = 0
        async for key in self.client.scan_iter(match=self.prefix + "*", count=500):
            removed += int(await self.client.delete(key))
        return removed

    async def aclose(self) -> None:
        await self.client.aclose()
