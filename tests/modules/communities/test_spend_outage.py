"""MongoDB away in the middle of a run of spends: each spend that needs it answers 503
`community_directory_unavailable` with Retry-After, nothing is half-written (no spend row,
no wallet change, no key recorded), and once MongoDB is back the same request goes through."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from commdesk_billing.app import create_app
from commdesk_billing.config import Settings
from commdesk_billing.localmongo import LocalMongo
from commdesk_billing.modules.communities.mongo import community_directory
from commdesk_billing.security.jwt import Role, issue_token
from commdesk_billing.storage import LocalDocumentStore
from tests.conftest import auth, new_wallet
from tests.harness.faults import Recorder
from tests.harness.mongo import MongoTarget, communities

pytestmark = pytest.mark.slow


@pytest.fixture
async def api(
    settings: Settings, engine: AsyncEngine, own_mongo: LocalMongo, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    # No cache: every spend asks MongoDB, as one would once its entry expired.
    s = settings.model_copy(
        update={
            "mongodb_url": SecretStr(own_mongo.url),
            "mongodb_timeout_s": 1.0,
            "community_cache_s": 0,
        }
    )
    app = create_app(s)
    app.state.settings, app.state.engine = s, engine
    app.state.documents = LocalDocumentStore(tmp_path / "documents")
    app.state.communities = community_directory(s)
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://billing") as client:
            yield client
    finally:
        await app.state.communities.aclose()


async def _spends_of(engine: AsyncEngine, wallet_id: uuid.UUID) -> int:
    async with engine.connect() as conn:
        return int(
            (
                await conn.execute(
                    text("SELECT count(*) FROM community_spends WHERE wallet_id = :w"),
                    {"w": wallet_id},
                )
            ).scalar_one()
        )


async def test_spends_while_mongodb_is_away_are_503s_that_change_nothing(
    api: httpx.AsyncClient,
    settings: Settings,
    engine: AsyncEngine,
    own_mongo: LocalMongo,
    faults: Recorder,
) -> None:
    community = f"c-{uuid.uuid4().hex[:10]}"
    target = MongoTarget(own_mongo.url, settings.mongodb_database, own_mongo)
    async with communities(target) as collection:
        await collection.insert_one(
            {"_id": community, "name": "Book Club", "owner_ids": [], "status": "active"}
        )
    member = f"member-{uuid.uuid4().hex}"
    wallet = await new_wallet(engine, 1000, sub=member)
    tok = issue_token(settings, sub=member, role=Role.member)
    url = f"/v1/communities/{community}/spends"

    async def spend(key: str) -> httpx.Response:
        return await api.post(url, json={"credits": 10, "reason": "tip"}, headers=auth(tok, key))

    assert (await spend("before")).status_code == 201
    await own_mongo.stop()
    refused = [await spend(f"during-{i}") for i in range(3)]
    me = (await api.get("/v1/wallets/me", headers=auth(tok))).json()
    during = await _spends_of(engine, wallet.id)
    await own_mongo.start()
    retried = [await spend(f"during-{i}") for i in range(3)]  # the same keys, now through
    after = (await api.get("/v1/wallets/me", headers=auth(tok))).json()
    applied = await _spends_of(engine, wallet.id)
    faults.record(
        "MongoDB stopped while members spend in a community",
        injected=3,
        what="the server process stopped; 3 spends, then the same 3 keys once it is back",
        lost=max(0, 4 - applied),
        twice=max(0, applied - 4) + max(0, during - 1),
        outcome="503 + Retry-After, nothing written; the retries apply once each",
    )
    assert [(r.status_code, r.json()["code"], r.headers["retry-after"]) for r in refused] == [
        (503, "community_directory_unavailable", "5")
    ] * 3
    assert (me["available_credits"], during) == (990, 1)
    assert [r.status_code for r in retried] == [201] * 3
    assert (after["available_credits"], applied) == (960, 4)
