"""CommDesk's communities, read from its MongoDB through a short cache.

The `communities` collection belongs to CommDesk; billing only reads it (the four fields it
needs, by `_id`). What billing decides from a community — whether it may receive spends or
payouts, who its owners are — is decided here, once:

- an id is checked before any query: an id no community can have is a 422, never a query;
- a document that lacks the shape below is never used for money (`CommunityRecordInvalid`,
  502: CommDesk's data needs fixing, retrying will not help);
- a read is reused for `BILLING_COMMUNITY_CACHE_S`, a miss (or an unusable record) for at most
  `NEGATIVE_TTL_MAX_S` of that, so a community created a moment ago is seen soon;
- MongoDB not answering within `BILLING_MONGODB_TIMEOUT_S` is `CommunityDirectoryUnavailable`
  (503, Retry-After). A fresh cached entry is still served then; an expired one is not, since
  a community suspended in the meantime must not go on receiving money.

Document shape: `{"_id": str, "name": str, "owner_ids": [str, ...], "status": "active" |
"suspended"}`.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import pymongo
import structlog
from bson import ObjectId
from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

from commdesk_billing.errors import (
    CommunityDirectoryUnavailable,
    CommunityNotFound,
    CommunityRecordInvalid,
    CommunitySuspended,
    InvalidCommunityId,
)
from commdesk_billing.telemetry.metrics import COMMUNITY_LOOKUPS

__all__ = [
    "Community",
    "CommunityDirectory",
    "CommunityDirectoryUnavailable",
    "CommunityNotFound",
    "CommunityRecordInvalid",
    "CommunityStatus",
    "CommunitySuspended",
    "InvalidCommunityId",
    "check_community_id",
    "record_problem",
]

log = structlog.get_logger(__name__)

COLLECTION = "communities"
# Slugs, UUIDs and ObjectId hex all fit; nothing that could mean anything to MongoDB does.
ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
_OBJECT_ID_HEX = re.compile(r"[0-9a-fA-F]{24}")
PROJECTION = {"_id": 1, "name": 1, "owner_ids": 1, "status": 1}

MAX_ENTRIES = 10_000
NEGATIVE_TTL_MAX_S = 5.0
# Readiness probes are commonly given a second: a MongoDB that is down must make /readyz
# say so, not make the probe itself time out.
PING_TIMEOUT_MAX_S = 1.0
RETRY_AFTER_S = 5
# PyMongo bounds each operation (timeoutMS); this is for anything outside that bound.
_BACKSTOP_S = 1.0

# Bounds of a usable record: what a receipt can print and an ownership check can scan.
MAX_NAME_LENGTH = 200
MAX_OWNERS = 1_000
MAX_OWNER_ID_LENGTH = 128


class CommunityStatus(StrEnum):
    active = "active"
    suspended = "suspended"


@dataclass(frozen=True)
class Community:
    id: str
    name: str
    owner_ids: tuple[str, ...]
    status: CommunityStatus

    def is_owner(self, user_id: str) -> bool:
        return user_id in self.owner_ids


@dataclass(frozen=True)
class _Unusable:
    """A record that exists but may not be used (cached like a miss)."""

    community_id: str


_Read = Community | _Unusable | None


@dataclass
class _Entry:
    expires_at: float
    read: _Read


def check_community_id(community_id: str) -> str:
    """The id, if a community could have it; else `InvalidCommunityId` (nothing is asked)."""
    if not ID_PATTERN.fullmatch(community_id):
        raise InvalidCommunityId(
            "a community id is 1-64 characters of letters, digits, '-' and '_'"
        )
    return community_id


def record_problem(doc: dict[str, Any]) -> str | None:
    """What makes a document unusable, in words that carry none of its contents."""
    name = doc.get("name")
    if not isinstance(name, str) or not name.strip():
        return "name missing or not text"
    if len(name) > MAX_NAME_LENGTH or not name.isprintable():
        return "name too long or not printable"
    owners = doc.get("owner_ids")
    if not isinstance(owners, list) or len(owners) > MAX_OWNERS:
        return "owner_ids missing, not a list, or too long"
    if not all(isinstance(o, str) and 0 < len(o) <= MAX_OWNER_ID_LENGTH for o in owners):
        return "owner_ids holds something other than ids"
    if doc.get("status") not in set(CommunityStatus):
        return "status missing or unknown"
    return None


class CommunityDirectory:
    """Reads communities by id. One per process (it owns its client: `aclose`)."""

    def __init__(
        self,
        client: AsyncMongoClient[dict[str, Any]],
        database: str,
        *,
        cache_s: float,
        timeout_s: float,
        max_entries: int = MAX_ENTRIES,
        where: str = "mongodb",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._collection = client[database][COLLECTION]
        self._cache_s = cache_s
        self._negative_s = min(cache_s, NEGATIVE_TTL_MAX_S)
        self._timeout_s = timeout_s
        self._max_entries = max_entries
        self._where = where  # the servers, never the credentials: for logs
        self._clock = clock
        self._cache: OrderedDict[str, _Entry] = OrderedDict()
        self._inflight: dict[str, asyncio.Task[_Read]] = {}

    async def get(self, community_id: str) -> Community | None:
        """The community, or None if MongoDB has no document with this id. Raises
        `InvalidCommunityId`, `CommunityRecordInvalid`, `CommunityDirectoryUnavailable`."""
        key = check_community_id(community_id)
        entry = self._cache.get(key)
        if entry is not None and entry.expires_at > self._clock():
            self._cache.move_to_end(key)
            COMMUNITY_LOOKUPS.labels("cached").inc()
            return _usable(entry.read)
        return _usable(await self._read_once(key))

    async def require_active(self, community_id: str) -> Community:
        """The community, if it may receive money now; else `CommunityNotFound`,
        `CommunitySuspended` (or what `get` raises)."""
        community = await self.get(community_id)
        if community is None:
            raise CommunityNotFound("no community has this id", community_id=community_id)
        if community.status is not CommunityStatus.active:
            raise CommunitySuspended(
                "the community is suspended: it receives no spends or payouts",
                community_id=community.id,
            )
        return community

    async def ping(self) -> bool:
        """Does MongoDB answer now (bounded by a second at most)? Never raises."""
        bound = min(self._timeout_s, PING_TIMEOUT_MAX_S)
        try:
            async with asyncio.timeout(bound + _BACKSTOP_S):
                with pymongo.timeout(bound):
                    await self._client.admin.command("ping")
        except (PyMongoError, TimeoutError) as exc:
            log.warning("communities.mongodb.down", where=self._where, error=type(exc).__name__)
            return False
        return True

    async def aclose(self) -> None:
        for task in list(self._inflight.values()):
            task.cancel()
        await self._client.close()

    async def _read_once(self, key: str) -> _Read:
        # One query per id at a time: when a popular community's entry expires, the requests
        # that find it expired wait for one read instead of each sending their own.
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.ensure_future(self._read(key))
            self._inflight[key] = task
            task.add_done_callback(lambda done: self._settled(key, done))
        # A caller that gives up (a client gone away) leaves the read to finish for the others.
        return await asyncio.shield(task)

    def _settled(self, key: str, task: asyncio.Task[_Read]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if not task.cancelled():
            task.exception()  # retrieved: the waiters saw it (or nobody was left to)

    async def _read(self, key: str) -> _Read:
        # Billing's ids are CommDesk's `_id` strings. A document inserted without an `_id`
        # got an ObjectId instead, whose hex is the id CommDesk hands out: a 24-hex id is
        # tried both ways (the string wins if both exist).
        ids: list[Any] = [key]
        if _OBJECT_ID_HEX.fullmatch(key):
            ids.append(ObjectId(key))
        query = {"_id": ids[0]} if len(ids) == 1 else {"_id": {"$in": ids}}
        try:
            async with asyncio.timeout(self._timeout_s + _BACKSTOP_S):
                docs = await self._collection.find(query, PROJECTION, limit=2).to_list(2)
        except (PyMongoError, TimeoutError) as exc:
            COMMUNITY_LOOKUPS.labels("unavailable").inc()
            log.warning(
                "communities.directory.unavailable",
                community_id=key,
                where=self._where,
                error=type(exc).__name__,
            )
            raise CommunityDirectoryUnavailable(
                "the community directory (MongoDB) did not answer; nothing was changed: "
                "retry after Retry-After seconds",
                retry_after_s=RETRY_AFTER_S,
            ) from exc
        docs.sort(key=lambda d: not isinstance(d.get("_id"), str))
        read = self._parse(key, docs[0]) if docs else None
        COMMUNITY_LOOKUPS.labels(
            "not_found" if read is None else "invalid" if isinstance(read, _Unusable) else "found"
        ).inc()
        self._remember(key, read)
        return read

    def _parse(self, key: str, doc: dict[str, Any]) -> _Read:
        problem = record_problem(doc)
        if problem is not None:
            # The id and what is wrong; nothing of the document itself (it is CommDesk's).
            log.error("communities.document.invalid", community_id=key, problem=problem)
            return _Unusable(key)
        return Community(
            id=str(doc["_id"]),
            name=doc["name"],
            owner_ids=tuple(doc["owner_ids"]),
            status=CommunityStatus(doc["status"]),
        )

    def _remember(self, key: str, read: _Read) -> None:
        ttl = self._cache_s if isinstance(read, Community) else self._negative_s
        if ttl <= 0:
            return
        self._cache[key] = _Entry(self._clock() + ttl, read)
        self._cache.move_to_end(key)
        while len(self._cache) > self._max_entries:
            self._cache.popitem(last=False)


def _usable(read: _Read) -> Community | None:
    if isinstance(read, _Unusable):
        raise CommunityRecordInvalid(
            "CommDesk's record of this community is incomplete or malformed; it cannot be "
            "used until it is fixed",
            community_id=read.community_id,
        )
    return read
