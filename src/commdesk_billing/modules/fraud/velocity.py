"""Velocity windows: how many attempts one user / IP / device / instrument made lately, and
how many accounts one device or instrument has served.

Redis keeps them as sliding windows (a sorted set per key, scored by time, trimmed on each
touch; keys under the run's prefix, expiring with their window). The same counts are read
from `fraud_assessments` in SQL whenever Redis cannot answer (`RedisUnavailable`, at once
while an outage is remembered), so an outage changes how fast a decision is made, never
which one — both count every scored attempt, this one included.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from redis.asyncio import Redis
from redis.exceptions import NoScriptError
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.kv.store import RedisStore, RedisUnavailable
from commdesk_billing.modules.fraud import repository as repo

log = structlog.get_logger(__name__)

# How far back "many accounts on one device / instrument" looks.
ACCOUNTS_WINDOW_S = 30 * 86400


@dataclass(frozen=True)
class Touch:
    """One attempt on one dimension: `member` names the attempt (stable across a retried
    transaction, so a retry does not count twice)."""

    dimension: str  # user | ip | device | instrument
    value: str
    member: str


@dataclass(frozen=True)
class Counts:
    attempts: dict[str, int]  # dimension -> attempts in the window, this one included
    accounts: dict[str, int]  # device / instrument -> distinct accounts, this one included
    source: str  # "redis" or "sql"


async def count(
    conn: AsyncConnection,
    store: RedisStore | None,
    touches: list[Touch],
    *,
    user_id: str,
    window_s: int,
    accounts_of: tuple[str, ...] = ("device", "instrument"),
) -> Counts:
    if store is not None:
        try:
            return await _redis(store, touches, user_id, window_s, accounts_of)
        except RedisUnavailable:
            log.info("fraud.velocity.sql_fallback")
    return await _sql(conn, touches, user_id, window_s, accounts_of)


# Every window of one attempt in one round trip (a pipeline of sixteen commands cost the
# API process more CPU than the rest of the Redis path): per key, the same ZADD, trim,
# ZCARD and EXPIRE a pipeline would send. ARGV[1] is the time in ms; then per key its
# member, its cutoff (scores at or below it are gone) and its time to live.
_WINDOWS = """
local now = ARGV[1]
local out = {}
for i, key in ipairs(KEYS) do
  local j = 2 + (i - 1) * 3
  redis.call('ZADD', key, now, ARGV[j])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', ARGV[j + 1])
  out[i] = redis.call('ZCARD', key)
  redis.call('EXPIRE', key, ARGV[j + 2])
end
return out
"""
# Redis names a script by its SHA-1 (EVALSHA): an identifier, not a safeguard.
_WINDOWS_SHA = hashlib.sha1(_WINDOWS.encode(), usedforsecurity=False).hexdigest()


async def _redis(
    store: RedisStore,
    touches: list[Touch],
    user_id: str,
    window_s: int,
    accounts_of: tuple[str, ...],
) -> Counts:
    now_ms = int(time.time() * 1000)
    keys: list[str] = []
    args: list[str | int] = [now_ms]
    for t in touches:
        keys.append(store.key("fraud", "v", t.dimension, t.value))
        args += [t.member, now_ms - window_s * 1000, window_s + 60]
        if t.dimension in accounts_of:
            keys.append(store.key("fraud", "a", t.dimension, t.value))
            args += [user_id, now_ms - ACCOUNTS_WINDOW_S * 1000, ACCOUNTS_WINDOW_S + 60]

    async def work(r: Redis) -> list[int]:
        try:
            found = await r.evalsha(_WINDOWS_SHA, len(keys), *keys, *args)
        except NoScriptError:  # a restarted (or new) server: load it once
            found = await r.eval(_WINDOWS, len(keys), *keys, *args)
        return [int(n) for n in found]

    results = await store.call("fraud_velocity", work)
    attempts: dict[str, int] = {}
    accounts: dict[str, int] = {}
    i = 0
    for t in touches:
        attempts[t.dimension] = results[i]
        i += 1
        if t.dimension in accounts_of:
            accounts[t.dimension] = results[i]
            i += 1
    return Counts(attempts, accounts, "redis")


async def _sql(
    conn: AsyncConnection,
    touches: list[Touch],
    user_id: str,
    window_s: int,
    accounts_of: tuple[str, ...],
) -> Counts:
    now = datetime.now(UTC)
    since = now - timedelta(seconds=window_s)
    attempts: dict[str, int] = {}
    accounts: dict[str, int] = {}
    for t in touches:
        # +1: this attempt, not written yet (its assessment commits with its decision).
        attempts[t.dimension] = await repo.count_since(conn, t.dimension, t.value, since) + 1
        if t.dimension in accounts_of:
            seen = await repo.accounts_since(
                conn, t.dimension, t.value, now - timedelta(seconds=ACCOUNTS_WINDOW_S)
            )
            accounts[t.dimension] = len(seen | {user_id})
    return Counts(attempts, accounts, "sql")
