"""The scheduler's `metrics_snapshot` job: figures read from the database and the broker
into gauges, every BILLING_METRICS_SNAPSHOT_EVERY_S, by the leader only (a standby's
gauges keep their last values; alert rules take the max over schedulers).

- the ledger's house balances and revenue recognized / deferred / fees
  (`modules/ledger/gauges.py`: money is read from the books, never counted);
- wallets below zero and wallets with auto-recharge on (`modules/wallet/gauges.py`);
- PostgreSQL's connections against its limit, RabbitMQ's queue depths and consumers, and
  whether PostgreSQL, Redis and RabbitMQ answered (`telemetry/probes.py`).

A part that fails is logged and leaves its gauges as they were (a dependency it could not
reach reads 0 in `billing_dependency_up`); the others still run.
`billing_metrics_snapshot_last_success_timestamp_seconds` moves only when every part ran.
"""

from __future__ import annotations

import time

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from commdesk_billing.config import Settings
from commdesk_billing.kv.store import RedisStore
from commdesk_billing.modules.ledger import gauges as ledger_gauges
from commdesk_billing.modules.wallet import gauges as wallet_gauges
from commdesk_billing.telemetry import probes
from commdesk_billing.telemetry.metrics import METRICS_SNAPSHOT_LAST_SUCCESS

log = structlog.get_logger(__name__)


class MetricsSnapshot:
    def __init__(self, settings: Settings, engine: AsyncEngine) -> None:
        self.settings = settings
        self.engine = engine
        self.house = ledger_gauges.HouseBalances()
        self._redis: RedisStore | None = None

    def _store(self) -> RedisStore:
        # Made on first use: building the job list connects to nothing.
        if self._redis is None:
            self._redis = RedisStore.from_settings(self.settings)
        return self._redis

    async def run(self) -> bool:
        ok = await probes.postgres(self.engine)
        if ok:
            try:
                ledger_gauges.publish(await self.house.read(self.engine))
                await wallet_gauges.publish(self.engine)
            except Exception as exc:  # logged; the broker and Redis are still read
                log.warning("metrics.snapshot.database_failed", error=type(exc).__name__)
                ok = False
        ok = await probes.redis(self._store()) and ok
        ok = await probes.rabbitmq(self.settings) and ok
        if ok:
            METRICS_SNAPSHOT_LAST_SUCCESS.set(time.time())
        return ok

    async def aclose(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None
