"""Non-financial rollups in MongoDB (DESIGN §1): per community and day, how many spends, how
many credits and how many members spent. Written with the same PyMongo client the community
directory reads with (`communities/mongo.py`), to the `analytics_community_daily`
collection; each document is replaced whole from the day's spends (`_id` is
`<community>:<day>`), so a repeat writes the same document."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import structlog
from pymongo import AsyncMongoClient, UpdateOne
from pymongo.errors import PyMongoError
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.config import Settings
from commdesk_billing.modules.analytics import sources
from commdesk_billing.modules.analytics.periods import day_start
from commdesk_billing.modules.communities.mongo import mongo_client

COLLECTION = "analytics_community_daily"

log = structlog.get_logger(__name__)


def document_id(community_id: str, day: date) -> str:
    return f"{community_id}:{day.isoformat()}"


class CommunityActivity:
    """Writes a day's community documents; the client is built on first use (a worker
    whose MongoDB is away still serves every other queue) and closed by `aclose`."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._client: AsyncMongoClient[dict[str, Any]] | None = None

    def _collection(self) -> Any:
        if self._client is None:
            self._client = mongo_client(self._settings)
        return self._client[self._settings.mongodb_database][COLLECTION]

    async def write_day(self, conn: AsyncConnection, day: date) -> int:
        """Upsert the documents of `day`'s active communities; returns how many."""
        rows = await sources.communities(conn, day_start(day), day_start(day + timedelta(days=1)))
        if not rows:
            return 0
        now = datetime.now(UTC)
        await self._collection().bulk_write(
            [
                UpdateOne(
                    {"_id": document_id(r.community_id, r.day)},
                    {
                        "$set": {
                            "community_id": r.community_id,
                            "day": r.day.isoformat(),
                            "spends": r.spends,
                            "credits_spent": r.credits,
                            "active_members": r.members,
                            "refreshed_at": now,
                        }
                    },
                    upsert=True,
                )
                for r in rows
            ],
            ordered=False,
        )
        return len(rows)

    async def write_day_or_log(self, conn: AsyncConnection, day: date) -> bool:
        """`write_day`, but MongoDB away only logs: the financial rollups (PostgreSQL) must
        not wait on it. The job rewrites the recent days on its next run; older days come
        back with `analytics rebuild`."""
        try:
            await self.write_day(conn, day)
        except PyMongoError as exc:
            log.warning(
                "analytics.community_activity.not_written",
                day=day.isoformat(),
                error=type(exc).__name__,
            )
            return False
        return True

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
