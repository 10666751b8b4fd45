"""The payee routes in-process against the Payouts sandbox over real HTTP on loopback: an
app of their own (the suite's database, MongoDB and engine; Payouts pointed at the sandbox;
a fresh sealing key ring), and callers of every kind for one community."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from commdesk_billing.app import create_app
from commdesk_billing.config import Settings
from commdesk_billing.gateway.factory import payouts_client
from commdesk_billing.gateway.payouts import CashfreePayoutsClient
from commdesk_billing.modules.communities.mongo import community_directory
from commdesk_billing.security.jwt import Role, issue_token
from commdesk_billing.security.sealed import KeyRing, key_ring
from commdesk_billing.storage import LocalDocumentStore
from tests.conftest import auth
from tests.gateway.sandbox.conftest import payouts, sandbox_url
from tests.harness.mongo import MongoTarget, communities
from tests.modules.payees.helpers import payout_settings

__all__ = ["payouts", "sandbox_url"]


@dataclass
class PayeeApp:
    settings: Settings
    app: Any
    cashfree: CashfreePayoutsClient
    ring: KeyRing


@pytest.fixture(scope="session")
async def payee_app(
    settings: Settings,
    engine: AsyncEngine,
    sandbox_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[PayeeApp]:
    cfg = payout_settings(settings, sandbox_url)
    application = create_app(cfg)
    # ASGITransport runs no lifespan: the state it would have made.
    application.state.settings = cfg
    application.state.engine = engine
    application.state.documents = LocalDocumentStore(tmp_path_factory.mktemp("payee-documents"))
    application.state.communities = community_directory(cfg)
    application.state.payouts = payouts_client(cfg)
    application.state.payout_keys = key_ring(cfg)
    try:
        yield PayeeApp(cfg, application, application.state.payouts, application.state.payout_keys)
    finally:
        await application.state.payouts.aclose()
        await application.state.communities.aclose()


@pytest.fixture
async def api(payee_app: PayeeApp) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=payee_app.app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://billing.test") as c:
        yield c


_ROLES = {
    "member": Role.member,
    "owner_record": Role.member,
    "owner_claim": Role.community_owner,
    "owner_elsewhere": Role.community_owner,
    "finance_admin": Role.finance_admin,
    "support": Role.support,
    "auditor": Role.auditor,
}


@dataclass
class World:
    """One community in MongoDB and a caller of each kind (`tests/authz.py` PAYEE_CALLERS)."""

    settings: Settings
    community: str
    owner: str
    subs: dict[str, str] = field(default_factory=dict)

    def headers(self, caller: str, key: str | None = None) -> dict[str, str]:
        key = key or uuid.uuid4().hex
        if caller == "anonymous":
            return {"Idempotency-Key": key}
        if caller == "forged":
            return auth("not.a.token", key)
        if caller == "service_none":
            tok = issue_token(self.settings, sub="svc-payees", role=Role.service, scopes=[])
            return auth(tok, key)
        claims = {"owner_claim": [self.community], "owner_elsewhere": ["elsewhere"]}
        sub = self.owner if caller == "owner_record" else f"{caller}-{uuid.uuid4().hex[:8]}"
        tok = issue_token(
            self.settings, sub=sub, role=_ROLES[caller], communities=claims.get(caller)
        )
        return auth(tok, key)


async def new_community(mongodb: MongoTarget, owner: str) -> str:
    community = f"c-{uuid.uuid4().hex[:12]}"
    async with communities(mongodb) as collection:
        await collection.insert_one(
            {"_id": community, "name": "Chess Club", "owner_ids": [owner], "status": "active"}
        )
    return community


@pytest.fixture
async def world(payee_app: PayeeApp, mongodb: MongoTarget) -> World:
    owner = f"owner-{uuid.uuid4().hex[:10]}"
    return World(payee_app.settings, await new_community(mongodb, owner), owner)
