"""The subscriptions' routes in-process: every caller kind against the matrix
(`tests/authz.py` SUBSCRIPTION_ALLOW), refusals as RFC 9457 problems."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from commdesk_billing.config import Settings
from commdesk_billing.problems import MEDIA_TYPE
from commdesk_billing.security.jwt import Role, issue_token
from tests.authz import SUBSCRIPTION_ALLOW, SUBSCRIPTION_CALLERS
from tests.conftest import auth, new_wallet
from tests.modules.subscriptions.helpers import make_plan, member, subscribe

_ROLES = {
    "other_member": Role.member,
    "community_owner": Role.community_owner,
    "finance_admin": Role.finance_admin,
    "support": Role.support,
    "auditor": Role.auditor,
}


@pytest.mark.parametrize("route", sorted(SUBSCRIPTION_ALLOW))
async def test_every_caller_gets_what_the_matrix_says(
    route: str, client: httpx.AsyncClient, settings: Settings, engine: AsyncEngine
) -> None:
    method, path = route.split(" ", 1)
    for caller in SUBSCRIPTION_CALLERS:
        plan = await make_plan(client, settings, price_credits=10)
        dearer = await make_plan(client, settings, price_credits=20)
        owner = await member(engine, 100)
        sid = (await subscribe(client, settings, owner, plan["code"]))["id"]
        key = uuid.uuid4().hex
        if caller == "owner":
            headers = owner.headers(settings)
        elif caller == "anonymous":
            headers = {"Idempotency-Key": key}
        elif caller == "forged":
            headers = auth("not.a.token", key)
        elif caller == "service":
            tok = issue_token(settings, sub="svc", role=Role.service, scopes=["wallets:read"])
            headers = auth(tok, key)
        else:
            sub = f"{caller}-{uuid.uuid4().hex}"
            await new_wallet(engine, 100, sub=sub)
            headers = auth(issue_token(settings, sub=sub, role=_ROLES[caller]), key)
        body: dict[str, Any] | None = {
            "POST /v1/subscription-plans": {
                "code": f"p{uuid.uuid4().hex[:10]}",
                "name": "M",
                "price_credits": 5,
                "interval_unit": "day",
            },
            # The owner already holds `plan`: they subscribe to another.
            "POST /v1/subscriptions": {"plan_code": dearer["code"]},
            "POST /v1/subscriptions/{subscription_id}/cancel": {},
            "POST /v1/subscriptions/{subscription_id}/change": {"plan_code": dearer["code"]},
        }.get(route)
        url = path.format(subscription_id=sid)
        r = await client.request(method, url, json=body, headers=headers)
        if caller in SUBSCRIPTION_ALLOW[route]:
            assert r.status_code in (200, 201), (route, caller, r.text)
        else:
            want = 401 if caller in ("anonymous", "forged") else 403
            assert r.status_code == want, (route, caller, r.status_code, r.text)
            assert r.headers["content-type"] == MEDIA_TYPE
