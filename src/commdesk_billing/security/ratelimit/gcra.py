"""The generic cell rate algorithm (a token bucket kept as one timestamp), twice: as a Lua
script Redis runs atomically for every process, and in memory for one process while Redis
is away. Both take the same buckets and answer the same `Decision`, so the fallback limits
exactly as Redis would, only per process.

A bucket of `burst` tokens refills one token every `interval` (window / rate). Its state is
the theoretical arrival time `tat`: the moment it would be full again. A request is allowed
when, after adding one interval, `tat` is at most `burst` intervals ahead of now. All the
buckets of one request (the user's and the address's) are decided together: if one refuses,
none is charged, so a refused request never eats a bucket that allowed it.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

US = 1_000_000


@dataclass(frozen=True)
class Policy:
    """What a bucket allows: `rate` per `window_s` on average, `burst` at once. `name` is
    its name in the `RateLimit-Policy` header ("money", "money-ip")."""

    name: str
    rate: int
    window_s: int
    burst: int

    @property
    def interval_us(self) -> int:
        # At least 1 µs: a rate above a million a second is no limit anyway.
        return max(1, self.window_s * US // self.rate)


@dataclass(frozen=True)
class Bucket:
    policy: Policy
    key: str  # without the store's prefix


@dataclass(frozen=True)
class Level:
    """A bucket after the decision: whole tokens left, and µs until it is full again."""

    remaining: int
    full_in_us: int


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after_us: int  # 0 when allowed
    levels: tuple[Level, ...]  # one per bucket, in the order asked
    backend: str  # "redis" or "local"

    @property
    def retry_after_s(self) -> int:
        """Whole seconds, rounded up, at least 1: what `Retry-After` says on a refusal."""
        return max(1, math.ceil(self.retry_after_us / US))


# KEYS: the buckets. ARGV: per bucket, its interval (µs) then its burst.
# Returns {allowed, retry_after_us, remaining_1, full_in_us_1, remaining_2, ...}.
# Redis's own clock (TIME) is used, so processes with drifting clocks share one timeline.
# Numbers are written with %.0f: tostring() would write 1.7e+15 and lose the microseconds.
LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n = #KEYS
local tats = {}
local allowed = 1
local retry = 0
for i = 1, n do
  local interval = tonumber(ARGV[2 * i - 1])
  local burst = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', KEYS[i]) or now) or now
  if tat < now then tat = now end
  tats[i] = tat
  local allow_at = tat + interval - interval * burst
  if allow_at > now then
    allowed = 0
    if allow_at - now > retry then retry = allow_at - now end
  end
end
local out = {allowed, retry}
for i = 1, n do
  local interval = tonumber(ARGV[2 * i - 1])
  local burst = tonumber(ARGV[2 * i])
  local tat = tats[i]
  if allowed == 1 then
    tat = tat + interval
    redis.call('SET', KEYS[i], string.format('%.0f', tat), 'PX',
      math.max(1, math.ceil((tat - now) / 1000)))
  end
  local ahead = tat - now
  out[#out + 1] = math.max(0, math.floor((interval * burst - ahead) / interval))
  out[#out + 1] = ahead
end
return out
"""


def script_args(buckets: Sequence[Bucket]) -> list[int]:
    args: list[int] = []
    for b in buckets:
        args += [b.policy.interval_us, b.policy.burst]
    return args


def from_script(raw: Sequence[int], backend: str = "redis") -> Decision:
    values = [int(v) for v in raw]
    levels = tuple(Level(values[i], values[i + 1]) for i in range(2, len(values), 2))
    return Decision(bool(values[0]), values[1], levels, backend)


class LocalLimiter:
    """The same algorithm in one process's memory, for while Redis is away.

    At most `max_keys` buckets are kept, least recently used first out. Forgetting a bucket
    only ever lets its owner through sooner (a forgotten bucket is a full one), so the bound
    can never block anyone wrongly; it only caps the memory a flood of addresses can take.
    """

    def __init__(self, max_keys: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_keys = max_keys
        self._clock = clock
        self._tats: OrderedDict[str, int] = OrderedDict()

    def __len__(self) -> int:
        return len(self._tats)

    def clear(self) -> None:
        self._tats.clear()

    def acquire(self, buckets: Sequence[Bucket]) -> Decision:
        now = int(self._clock() * US)
        tats = []
        allowed, retry = True, 0
        for b in buckets:
            tat = max(self._tats.get(b.key, now), now)
            tats.append(tat)
            allow_at = tat + b.policy.interval_us - b.policy.interval_us * b.policy.burst
            if allow_at > now:
                allowed = False
                retry = max(retry, allow_at - now)
        levels = []
        for b, tat in zip(buckets, tats, strict=True):
            interval = b.policy.interval_us
            if allowed:
                tat += interval
                self._tats[b.key] = tat
                self._tats.move_to_end(b.key)
            ahead = tat - now
            levels.append(Level(max(0, (interval * b.policy.burst - ahead) // interval), ahead))
        while len(self._tats) > self.max_keys:
            self._tats.popitem(last=False)
        return Decision(allowed, retry, tuple(levels), "local")
