"""The reconciliation rows of the authorization matrix (`tests/authz.py`
RECONCILIATION_ALLOW), walked against every caller kind over the whole stack; refusals are
RFC 9457 problems."""

from __future__ import annotations

import uuid

import pytest

from commdesk_billing.security.jwt import Role, Scope, issue_token
from tests.authz import RECONCILIATION_ALLOW
from tests.authz import STACK_CALLERS as CALLERS
from tests.harness.stack import Stack

PROBLEM = "application/problem+json"
# What an allowed caller gets (a finding id nobody made: 404 after authorization).
OK = {
    "GET /v1/reconciliation/findings": 200,
    "GET /v1/reconciliation/findings/{finding_id}": 404,
    "POST /v1/reconciliation/findings/{finding_id}/explain": 404,
    "POST /v1/reconciliation/findings/{finding_id}/resolve": 404,
}


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("route", sorted(RECONCILIATION_ALLOW))
async def test_reconciliation_route_by_role(stack: Stack, route: str, caller: str) -> None:
    roles = {
        "owner": (Role.member, []),
        "other_member": (Role.member, []),
        "finance_admin": (Role.finance_admin, []),
        "support": (Role.support, []),
        "auditor": (Role.auditor, []),
        "service": (Role.service, [Scope.wallets_read.value, Scope.wallets_debit.value]),
    }
    headers: dict[str, str] = {"Idempotency-Key": uuid.uuid4().hex}
    if caller != "anonymous":
        role, scopes = roles[caller]
        tok = issue_token(stack.settings, sub=f"u-{uuid.uuid4().hex}", role=role, scopes=scopes)
        headers["Authorization"] = f"Bearer {tok}"
    method, path = route.split(" ")
    url = path.format(finding_id=uuid.uuid4())
    body = {"note": "matrix walk"} if method == "POST" else None
    r = await stack.api.request(method, url, json=body, headers=headers)
    allowed = RECONCILIATION_ALLOW[route]
    expected = 401 if caller == "anonymous" else OK[route] if caller in allowed else 403
    assert r.status_code == expected, (route, caller, r.text)
    if expected >= 400:
        assert r.headers["content-type"] == PROBLEM
