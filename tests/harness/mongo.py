"""MongoDB for a test run: one loopback nx-27017 server per run (`localmongo.py`), or the
server BILLING_MONGODB_URL names, and a database of the run's own (`cdb_<hex>`), dropped at
the end. Tests write community documents with PyMongo directly (`communities`)."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection

from commdesk_billing.localmongo import LocalMongo
from commdesk_billing.modules.communities.directory import COLLECTION
from commdesk_billing.stack import free_port

Document = dict[str, Any]


@dataclass(frozen=True)
class MongoTarget:
    url: str
    database: str
    server: LocalMongo | None  # None: a server this run did not start (left running)


@contextlib.asynccontextmanager
async def run_mongodb(data_dir: Path) -> AsyncIterator[MongoTarget]:
    """The run's MongoDB: started here unless BILLING_MONGODB_URL names one."""
    async with contextlib.AsyncExitStack() as exits:
        server = None
        url = os.environ.get("BILLING_MONGODB_URL")
        if url is None:
            server = await exits.enter_async_context(LocalMongo(data_dir, port=free_port()))
            url = server.url
        target = MongoTarget(url, f"cdb_{uuid.uuid4().hex[:12]}", server)
        try:
            yield target
        finally:
            async with communities(target) as collection:
                await collection.database.client.drop_database(target.database)


@contextlib.asynccontextmanager
async def communities(target: MongoTarget) -> AsyncIterator[AsyncCollection[Document]]:
    """The run's `communities` collection, for writing what CommDesk would have written."""
    client: AsyncMongoClient[Document] = AsyncMongoClient(target.url, timeoutMS=10_000)
    try:
        yield client[target.database][COLLECTION]
    finally:
        await client.close()
