"""The fraud rows of the authorization matrix (`tests/authz.py` FRAUD_ALLOW), walked against
every caller kind over the whole stack; refusals are RFC 9457 problems."""

from __future__ import annotations

import uuid

import pytest

from commdesk_billing.security.jwt import Role, Scope, issue_token
from tests.authz import FRAUD_ALLOW
from tests.authz import STACK_CALLERS as CALLERS
from tests.harness.stack import Stack

PROBLEM = "application/problem+json"
# What an allowed caller gets (a review or entry id nobody made: 404 after authorization).
OK = {
    "GET /v1/fraud/reviews": 200,
    "POST /v1/fraud/reviews/{review_id}/decision": 404,
    "GET /v1/fraud/profiles/{user_id}": 200,
    "GET /v1/fraud/lists": 200,
    "POST /v1/fraud/lists": 201,
    "DELETE /v1/fraud/lists/{entry_id}": 404,
}


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("route", sorted(FRAUD_ALLOW))
async def test_fraud_route_by_role(stack: Stack, route: str, caller: str) -> None:
    roles = {
        "owner": (Role.member, []),
        "other_member": (Role.member, []),
        "finance_admin": (Role.finance_admin, []),
        "support": (Role.support, []),
        "auditor": (Role.auditor, []),
        "service": (Role.service, [Scope.wallets_read.value, Scope.wallets_debit.value]),
    }
    headers: dict[str, str] = {}
    if caller != "anonymous":
        role, scopes = roles[caller]
        tok = issue_token(stack.settings, sub=f"u-{uuid.uuid4().hex}", role=role, scopes=scopes)
        headers = {"Authorization": f"Bearer {tok}"}
    method, path = route.split(" ")
    url = path.format(review_id=uuid.uuid4(), user_id=uuid.uuid4(), entry_id=uuid.uuid4())
    body = {
        "POST /v1/fraud/reviews/{review_id}/decision": {"decision": "release", "reason": "ok!"},
        "POST /v1/fraud/lists": {
            "list": "deny",
            "kind": "ip",
            "value": "10.{}.{}.{}".format(*uuid.uuid4().bytes[:3]),
            "reason": "matrix walk",
        },
    }.get(route)
    r = await stack.api.request(method, url, json=body, headers=headers)
    expected = 401 if caller == "anonymous" else OK[route] if caller in FRAUD_ALLOW[route] else 403
    assert r.status_code == expected, (route, caller, r.text)
    if expected >= 400:
        assert r.headers["content-type"] == PROBLEM


async def test_bad_cursors_and_bodies_are_problems(stack: Stack) -> None:
    h = {"Authorization": f"Bearer {stack.token('fin-1', Role.finance_admin)}"}
    r = await stack.api.get("/v1/fraud/reviews?cursor=nonsense", headers=h)
    assert (r.status_code, r.json()["code"]) == (422, "invalid_cursor")
    r = await stack.api.post(
        "/v1/fraud/lists",
        json={"list": "allow", "kind": "user", "value": "not-a-uuid", "reason": "why not"},
        headers=h,
    )
    assert (r.status_code, r.json()["code"]) == (422, "invalid_list_entry")
    r = await stack.api.post(
        "/v1/fraud/lists",
        json={"list": "grey", "kind": "user", "value": "x", "reason": "why not"},
        headers=h,
    )
    assert r.status_code == 422
