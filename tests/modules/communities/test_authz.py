"""The community routes against every caller kind (`tests/authz.py` COMMUNITY_ALLOW)."""

from __future__ import annotations

import uuid

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from commdesk_billing.config import Settings
from commdesk_billing.security.jwt import Role, issue_token
from tests.authz import COMMUNITY_ALLOW, COMMUNITY_CALLERS
from tests.conftest import auth, new_wallet
from tests.modules.communities.conftest import Put

_ROLES = {
    "member": Role.member,
    "other_member": Role.member,
    "owner_record": Role.member,
    "owner_claim": Role.community_owner,
    "owner_elsewhere": Role.community_owner,
    "finance_admin": Role.finance_admin,
    "support": Role.support,
    "auditor": Role.auditor,
}


class World:
    def __init__(self, settings: Settings, community: str, owner: str) -> None:
        self.settings, self.community, self.owner = settings, community, owner
        self.subs = {name: f"{name}-{uuid.uuid4().hex[:10]}" for name in COMMUNITY_CALLERS}
        self.subs["owner_record"] = owner
        self.member = self.subs["member"]

    def headers(self, caller: str) -> dict[str, str]:
        key = uuid.uuid4().hex
        if caller == "anonymous":
            return {"Idempotency-Key": key}
        if caller == "forged":
            return auth("not.a.token", key)
        if caller.startswith("service"):
            scopes = ["communities:spend"] if caller == "service_spend" else []
            tok = issue_token(
                self.settings, sub=self.subs[caller], role=Role.service, scopes=scopes
            )
            return auth(tok, key)
        communities = {"owner_claim": [self.community], "owner_elsewhere": ["elsewhere"]}
        tok = issue_token(
            self.settings,
            sub=self.subs[caller],
            role=_ROLES[caller],
            communities=communities.get(caller),
        )
        return auth(tok, key)


@pytest.fixture
async def world(settings: Settings, put: Put, engine: AsyncEngine) -> World:
    owner = f"owner-{uuid.uuid4().hex[:10]}"
    community = await put(owner_ids=[owner])
    w = World(settings, community, owner)
    for name in COMMUNITY_CALLERS:
        if name in _ROLES:
            await new_wallet(engine, 1000, sub=w.subs[name])
    return w


async def _spend_of_member(client: httpx.AsyncClient, world: World) -> str:
    r = await client.post(
        f"/v1/communities/{world.community}/spends",
        json={"credits": 5, "reason": "for the matrix"},
        headers=world.headers("member"),
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


@pytest.mark.parametrize("route", sorted(COMMUNITY_ALLOW))
async def test_every_caller_gets_what_the_matrix_says(
    route: str, client: httpx.AsyncClient, world: World
) -> None:
    method, path = route.split(" ", 1)
    for caller in COMMUNITY_CALLERS:
        spend_id = await _spend_of_member(client, world) if "{spend_id}" in path else ""
        url = path.format(community_id=world.community, spend_id=spend_id)
        body: dict[str, object] | None = {
            "POST /v1/communities/{community_id}/spends": {"credits": 1, "reason": "matrix"},
            "PUT /v1/communities/{community_id}/fee-plan": {"fee_bps": 900, "reason": "m"},
            "POST /v1/community-spends/{spend_id}/reversal": {"reason": "matrix"},
        }.get(route)
        if caller == "service_spend" and route.startswith("POST /v1/communities/"):
            body = {**(body or {}), "user_id": world.member}
        r = await client.request(method, url, json=body, headers=world.headers(caller))
        if caller in COMMUNITY_ALLOW[route]:
            assert r.status_code in (200, 201), (route, caller, r.text)
        else:
            want = 401 if caller in ("anonymous", "forged") else 403
            assert r.status_code == want, (route, caller, r.status_code, r.text)
            assert r.headers["content-type"] == "application/problem+json"
