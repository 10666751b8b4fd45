"""The bucket arithmetic, in memory and in Redis's script: the same answers for the same
sequence, a refusal that charges nothing, and a local table that stays bounded."""

from __future__ import annotations

import time
import uuid

from commdesk_billing.config import Settings
from commdesk_billing.kv.store import RedisStore
from commdesk_billing.security.ratelimit.gcra import Bucket, LocalLimiter, Policy
from commdesk_billing.security.ratelimit.limiter import Limiter

ONE_A_MINUTE_3_AT_ONCE = Policy("money", rate=1, window_s=60, burst=3)


def test_burst_then_refusal_then_refill() -> None:
    now = [1000.0]
    local = LocalLimiter(100, clock=lambda: now[0])
    b = [Bucket(ONE_A_MINUTE_3_AT_ONCE, "u:1")]
    answers = [local.acquire(b) for _ in range(4)]
    assert [a.allowed for a in answers] == [True, True, True, False]
    assert [a.levels[0].remaining for a in answers] == [2, 1, 0, 0]
    # Full again 3 minutes after the third; one token back after one minute.
    assert answers[2].levels[0].full_in_us == 180_000_000
    assert answers[3].retry_after_us == 60_000_000
    assert answers[3].retry_after_s == 60
    now[0] += 59.0
    assert not local.acquire(b).allowed
    now[0] += 1.0
    again = local.acquire(b)
    assert again.allowed and again.levels[0].remaining == 0


def test_a_refusal_charges_no_bucket() -> None:
    now = [0.0]
    local = LocalLimiter(100, clock=lambda: now[0])
    user = Bucket(Policy("money", 1, 60, 1), "u:1")
    address = Bucket(Policy("money-ip", 10, 60, 5), "ip:1")
    assert local.acquire([user, address]).allowed
    refused = local.acquire([user, address])
    assert not refused.allowed
    # The address bucket kept the 4 it had after the first request.
    assert refused.levels[1].remaining == 4
    assert local.acquire([address]).levels[0].remaining == 3


def test_the_local_table_is_bounded() -> None:
    local = LocalLimiter(100, clock=lambda: 0.0)
    policy = Policy("reads-ip", 1, 60, 1)
    for i in range(250):
        assert local.acquire([Bucket(policy, f"ip:{i}")]).allowed
    assert len(local) == 100
    # The oldest were forgotten: a forgotten bucket is a full one (never a wrong refusal).
    assert local.acquire([Bucket(policy, "ip:0")]).allowed
    assert not local.acquire([Bucket(policy, "ip:249")]).allowed


async def test_redis_answers_as_the_local_limiter_does(settings: Settings) -> None:
    store = RedisStore.from_settings(settings)
    limiter = Limiter(100)
    local = LocalLimiter(100)
    tag = uuid.uuid4().hex
    user = Bucket(ONE_A_MINUTE_3_AT_ONCE, f"rl:test:{tag}:u")
    address = Bucket(Policy("money-ip", 2, 60, 5), f"rl:test:{tag}:ip")
    try:
        started = time.monotonic()
        remote = [await limiter.acquire(store, [user, address]) for _ in range(5)]
        mine = [local.acquire([user, address]) for _ in range(5)]
        assert time.monotonic() - started < 5  # no refill can have happened
        assert {d.backend for d in remote} == {"redis"}
        assert [d.allowed for d in remote] == [d.allowed for d in mine]
        assert [d.allowed for d in remote] == [True, True, True, False, False]
        assert [[lv.remaining for lv in d.levels] for d in remote] == [
            [lv.remaining for lv in d.levels] for d in mine
        ]
        assert [[lv.remaining for lv in d.levels] for d in remote] == [
            [2, 4],
            [1, 3],
            [0, 2],
            [0, 2],
            [0, 2],
        ]
        # The refusal waits for the user's next token: just under a minute.
        assert 55 < remote[3].retry_after_us / 1e6 <= 60
        assert remote[3].retry_after_s == 60
        # The keys expire once full again (3 minutes at most).
        ttl = await store.client.pttl(store.key(user.key))
        assert 170_000 < ttl <= 180_000
    finally:
        await store.aclose()
