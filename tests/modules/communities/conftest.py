"""Fixtures of the community directory's tests: the run's `communities` collection (written
with PyMongo, as CommDesk writes it), a directory whose client counts the queries it sends
and whose clock the test moves, and a MongoDB server of a test's own to stop and start."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from pymongo import AsyncMongoClient, monitoring
from pymongo.asynchronous.collection import AsyncCollection

from commdesk_billing.localmongo import LocalMongo
from commdesk_billing.modules.communities.directory import CommunityDirectory
from commdesk_billing.stack import free_port
from tests.harness.mongo import Document, MongoTarget, communities

Put = Callable[..., Awaitable[str]]


class Clock:
    """The directory's clock: a test moves it instead of sleeping."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Finds(monitoring.CommandListener):
    """Counts the `find` commands a client sends (PyMongo's command monitoring), and keeps
    the last one: a test can tell a cached answer from a query."""

    def __init__(self) -> None:
        self.count = 0
        self.last: dict[str, Any] = {}

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "find":
            self.count += 1
            self.last = dict(event.command)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@pytest.fixture
async def collection(mongodb: MongoTarget) -> AsyncIterator[AsyncCollection[Document]]:
    async with communities(mongodb) as coll:
        yield coll


@pytest.fixture
def put(collection: AsyncCollection[Document]) -> Put:
    """Write a community document as CommDesk would; returns its id (a fresh one unless
    given). Fields given as None are left out of the document."""

    async def write(community_id: Any = None, **fields: Any) -> str:
        doc = {
            "_id": community_id if community_id is not None else f"c-{uuid.uuid4().hex[:12]}",
            "name": "Chess Club",
            "owner_ids": ["owner-1"],
            "status": "active",
            **fields,
        }
        doc = {k: v for k, v in doc.items() if v is not None}
        await collection.replace_one({"_id": doc["_id"]}, doc, upsert=True)
        return str(doc["_id"])

    return write


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def finds() -> Finds:
    return Finds()


DirectoryFactory = Callable[..., CommunityDirectory]


@pytest.fixture
async def make_directory(
    mongodb: MongoTarget, clock: Clock, finds: Finds
) -> AsyncIterator[DirectoryFactory]:
    """Directories on the run's MongoDB, closed at the end of the test."""
    made: list[CommunityDirectory] = []

    def make(*, cache_s: float = 30.0, timeout_s: float = 3.0, **kw: Any) -> CommunityDirectory:
        client: AsyncMongoClient[Document] = AsyncMongoClient(
            mongodb.url, timeoutMS=int(timeout_s * 1000), event_listeners=[finds]
        )
        directory = CommunityDirectory(
            client, mongodb.database, cache_s=cache_s, timeout_s=timeout_s, clock=clock, **kw
        )
        made.append(directory)
        return directory

    try:
        yield make
    finally:
        for directory in made:
            await directory.aclose()


@pytest.fixture
async def own_mongo(tmp_path: Path) -> AsyncIterator[LocalMongo]:
    """A MongoDB server of the test's own, to take away and bring back."""
    async with LocalMongo(tmp_path / "mongodb", port=free_port()) as server:
        yield server
