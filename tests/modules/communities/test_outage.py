"""MongoDB taken away for real: the server process stopped (or killed) mid-test, or a server
that accepts connections and never answers. Reads fail within the timeout with
`CommunityDirectoryUnavailable`; a fresh cached entry is still served, an expired one is not;
the API stays ready and says MongoDB is down; brought back, everything works again."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from commdesk_billing.config import Settings
from commdesk_billing.localmongo import LocalMongo
from commdesk_billing.modules.communities.directory import (
    CommunityDirectory,
    CommunityDirectoryUnavailable,
)
from commdesk_billing.modules.communities.mongo import community_directory, mongo_client
from tests.harness.mongo import MongoTarget, communities
from tests.modules.communities.conftest import Clock

# Each waits out MongoDB's timeout a few times.
pytestmark = pytest.mark.slow

TIMEOUT_S = 1.0
# Generous: the bound is the timeout plus the directory's one-second backstop; a loaded
# machine gets two more.
WITHIN_S = TIMEOUT_S + 1.0 + 2.0


def _settings(settings: Settings, url: str) -> Settings:
    return settings.model_copy(
        update={"mongodb_url": SecretStr(url), "mongodb_timeout_s": TIMEOUT_S}
    )


@contextlib.asynccontextmanager
async def _directory(
    settings: Settings, server: LocalMongo, clock: Clock
) -> AsyncIterator[CommunityDirectory]:
    """A directory made as the API makes its own (same client options), with a clock the
    test moves."""
    cfg = _settings(settings, server.url)
    directory = CommunityDirectory(
        mongo_client(cfg),
        cfg.mongodb_database,
        cache_s=cfg.community_cache_s,
        timeout_s=cfg.mongodb_timeout_s,
        clock=clock,
    )
    try:
        yield directory
    finally:
        await directory.aclose()


async def _unavailable(directory: CommunityDirectory, community_id: str) -> float:
    """`get` gives up with the 503 problem; how long it took."""
    started = time.monotonic()
    with pytest.raises(CommunityDirectoryUnavailable) as refused:
        await directory.get(community_id)
    took = time.monotonic() - started
    assert (refused.value.status, refused.value.code) == (503, "community_directory_unavailable")
    assert refused.value.extra == {"retry_after_s": 5}  # the Retry-After of the 503
    assert took < WITHIN_S, took
    return took


@pytest.mark.parametrize("kill", [False, True], ids=["stopped", "killed"])
async def test_mongodb_down_then_back(
    settings: Settings, own_mongo: LocalMongo, clock: Clock, kill: bool
) -> None:
    target = MongoTarget(own_mongo.url, settings.mongodb_database, own_mongo)
    async with communities(target) as collection:
        for cid, status in (("kept", "active"), ("never-read", "active")):
            await collection.insert_one(
                {"_id": cid, "name": cid, "owner_ids": ["o-1"], "status": status}
            )
    async with _directory(settings, own_mongo, clock) as directory:
        assert (await directory.require_active("kept")).name == "kept"
        assert await directory.ping() is True

        await own_mongo.stop(kill=kill)
        # Fresh in the cache: still served, no query needed.
        assert (await directory.require_active("kept")).name == "kept"
        # Never read, or a miss: nothing to serve but a 503.
        await _unavailable(directory, "never-read")
        started = time.monotonic()
        assert await directory.ping() is False
        assert time.monotonic() - started < WITHIN_S
        # Expired: a community suspended meanwhile must not go on receiving money.
        clock.advance(31)
        await _unavailable(directory, "kept")

        await own_mongo.start()
        assert (await directory.require_active("kept")).name == "kept"
        assert (await directory.require_active("never-read")).name == "never-read"
        assert await directory.ping() is True


async def test_a_server_that_accepts_and_never_answers(settings: Settings, clock: Clock) -> None:
    held: list[asyncio.StreamWriter] = []

    async def accept(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # kept open, never answered

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    cfg = _settings(settings, f"mongodb://127.0.0.1:{port}/")
    directory = community_directory(cfg)
    try:
        await _unavailable(directory, "anything")
        started = time.monotonic()
        assert await directory.ping() is False
        assert time.monotonic() - started < WITHIN_S
    finally:
        await directory.aclose()
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_readiness_says_mongodb_is_down_and_stays_ready(
    app: Any, client: httpx.AsyncClient, settings: Settings, own_mongo: LocalMongo
) -> None:
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"]["mongodb"] == "ok"  # the run's own server

    working = app.state.communities
    app.state.communities = community_directory(_settings(settings, own_mongo.url))
    try:
        ready = await client.get("/readyz")
        assert (ready.status_code, ready.json()["checks"]["mongodb"]) == (200, "ok")
        await own_mongo.stop()
        started = time.monotonic()
        ready = await client.get("/readyz")
        assert time.monotonic() - started < WITHIN_S
        # Purchases, refunds and webhooks need no MongoDB: still ready, MongoDB named down.
        assert ready.status_code == 200
        assert ready.json() == {
            "status": "ready",
            "checks": {
                "postgresql": "ok",
                "document_storage": "ok",
                "mongodb": "down",
                "redis": "ok",
            },
        }
        await own_mongo.start()
        ready = await client.get("/readyz")
        assert (ready.status_code, ready.json()["checks"]["mongodb"]) == (200, "ok")
    finally:
        await app.state.communities.aclose()
        app.state.communities = working
