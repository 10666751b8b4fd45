"""Deciding a request's buckets: in Redis (shared by every process), or, while Redis is away,
in this process's memory.

An outage never blocks anyone it should not: the local buckets start full, so the worst it
does is let through up to (processes x limit) instead of the limit, for as long as it lasts.
Nothing of record lives in Redis, so nothing can be corrupted by losing it: a restarted,
empty Redis is a set of full buckets.
"""

from __future__ import annotations

from collections.abc import Sequence

import structlog
from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from commdesk_billing.kv.store import RedisStore, RedisUnavailable
from commdesk_billing.security.ratelimit.gcra import (
    LUA,
    Bucket,
    Decision,
    LocalLimiter,
    from_script,
    script_args,
)
from commdesk_billing.telemetry.metrics import RATE_LIMIT_LOCAL

log = structlog.get_logger(__name__)

PURPOSE = "rate_limit"  # the label of billing_redis_fallbacks_total


class Limiter:
    def __init__(self, local_max_keys: int) -> None:
        self.local = LocalLimiter(local_max_keys)
        self._scripts: dict[int, AsyncScript] = {}
        self._on_local = False

    def _script(self, store: RedisStore) -> AsyncScript:
        # One per client: redis-py keeps the script's SHA and reloads it on NOSCRIPT (a
        # restarted Redis has forgotten it).
        script = self._scripts.get(id(store.client))
        if script is None:
            script = store.client.register_script(LUA)
            self._scripts = {id(store.client): script}
        return script

    async def acquire(self, store: RedisStore | None, buckets: Sequence[Bucket]) -> Decision:
        if store is not None:
            script = self._script(store)
            keys = [store.key(b.key) for b in buckets]
            args = script_args(buckets)

            async def run(client: Redis) -> list[int]:
                raw: list[int] = await script(keys=keys, args=args, client=client)
                return raw

            try:
                decision = from_script(await store.call(PURPOSE, run))
            except RedisUnavailable:
                pass
            else:
                if self._on_local:
                    self._on_local = False
                    RATE_LIMIT_LOCAL.set(0)
                    log.info("ratelimit.redis_restored", local_buckets=len(self.local))
                    # Redis counts again; forgetting the local buckets only makes them
                    # full ones at the next outage, never stricter ones.
                    self.local.clear()
                return decision
        if not self._on_local:
            self._on_local = True
            RATE_LIMIT_LOCAL.set(1)
            log.warning("ratelimit.local_fallback", redis_configured=store is not None)
        return self.local.acquire(buckets)
