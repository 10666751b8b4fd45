"""Which fee plan a spend uses: the community's latest version, or the configured default
(version 0). Read through a short per-process cache on the spend path (one statement fewer
for every spend into a busy community); a change made here is seen at once, one made by
another process within `BILLING_FEE_PLAN_CACHE_S`. Whichever version a spend used, it
records it: a plan change never rewrites a spend, and the delay never hides which applied.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.modules.communities import repository as repo
from commdesk_billing.modules.communities.model import FeePlan

_CACHE: dict[str, tuple[float, FeePlan]] = {}
_CACHE_MAX = 10_000


def default_plan(community_id: str, default_bps: int) -> FeePlan:
    return FeePlan(community_id, 0, default_bps, "default (BILLING_COMMUNITY_FEE_BPS)", None, None)


async def current(
    conn: AsyncConnection,
    community_id: str,
    default_bps: int,
    *,
    cache_s: float = 0.0,
    clock: Callable[[], float] = time.monotonic,
) -> FeePlan:
    """The plan in force; `cache_s` 0 reads the database every time."""
    now = clock()
    if cache_s > 0 and (hit := _CACHE.get(community_id)) is not None and hit[0] > now:
        plan = hit[1]
        # The default may have been changed in configuration since it was cached.
        return plan if plan.version else default_plan(community_id, default_bps)
    plan = await repo.current_plan(conn, community_id) or default_plan(community_id, default_bps)
    if cache_s > 0:
        if len(_CACHE) >= _CACHE_MAX:
            _CACHE.clear()
        _CACHE[community_id] = (now + cache_s, plan)
    return plan


def forget(community_id: str) -> None:
    """A plan changed in this process: the next spend reads it."""
    _CACHE.pop(community_id, None)
