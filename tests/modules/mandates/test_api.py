"""The mandates' rows of the authorization matrix (`tests/authz.py`), walked against every
caller kind over the whole stack."""

from __future__ import annotations

import uuid

import pytest

from commdesk_billing.security.jwt import Role, Scope, issue_token
from tests.authz import MANDATE_ALLOW
from tests.authz import STACK_CALLERS as CALLERS
from tests.harness.stack import Stack

PROBLEM = "application/problem+json"
BODY = {
    "max_amount_paise": 50_000,
    "customer_phone": "9876543210",
    "customer_email": "member@example.com",
}
OK = {
    "POST /v1/mandates": 201,
    "GET /v1/mandates": 200,
    "GET /v1/mandates/{mandate_id}": 200,
    "POST /v1/mandates/{mandate_id}/revoke": 200,
}


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("route", sorted(MANDATE_ALLOW))
async def test_mandate_route_by_role(stack: Stack, route: str, caller: str) -> None:
    owner = f"owner-{uuid.uuid4().hex}"
    owner_tok = stack.token(owner)
    made = await stack.api.post(
        "/v1/mandates",
        json=BODY,
        headers={"Authorization": f"Bearer {owner_tok}", "Idempotency-Key": uuid.uuid4().hex},
    )
    assert made.status_code == 201, made.text
    mandate_id = made.json()["id"]
    subs = {
        "owner": (owner, Role.member, []),
        "other_member": (None, Role.member, []),
        "finance_admin": (None, Role.finance_admin, []),
        "support": (None, Role.support, []),
        "auditor": (None, Role.auditor, []),
        "service": ("svc", Role.service, [Scope.wallets_read.value, Scope.wallets_debit.value]),
    }
    headers: dict[str, str] = {}
    if caller != "anonymous":
        sub, role, scopes = subs[caller]
        tok = issue_token(
            stack.settings, sub=sub or f"u-{uuid.uuid4().hex}", role=role, scopes=scopes
        )
        headers = {"Authorization": f"Bearer {tok}", "Idempotency-Key": uuid.uuid4().hex}
    method, path = route.split(" ")
    url = path.format(mandate_id=mandate_id)
    if method == "POST":
        r = await stack.api.post(url, json=BODY if url == "/v1/mandates" else None, headers=headers)
    else:
        r = await stack.api.get(url, headers=headers)
    expected = (
        401 if caller == "anonymous" else OK[route] if caller in MANDATE_ALLOW[route] else 403
    )
    assert r.status_code == expected, (route, caller, r.text)
    after = await stack.api.get(
        f"/v1/mandates/{mandate_id}", headers={"Authorization": f"Bearer {owner_tok}"}
    )
    wanted = "revoked" if route.endswith("revoke") and expected == 200 else "pending"
    assert after.json()["status"] == wanted
    if expected >= 400:
        assert r.headers["content-type"] == PROBLEM
