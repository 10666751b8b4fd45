"""Every request example the OpenAPI document gives is sent, as it is, to a running stack
over real HTTP, and answered with a status the route documents: never a 422 or a 400
(an example the route refuses would mislead every reader of /docs).

Path parameters are real where the test can make the thing (a member's wallet, a hold);
others get an id that does not exist, and then the route's documented 404 is the answer. A
community an example's body names is written to the run's MongoDB first, as CommDesk would
have written it."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from commdesk_billing.security.jwt import Role, issue_token
from tests.harness.mongo import MongoTarget, communities
from tests.harness.stack import Stack

_METHODS = ("post", "put", "patch", "delete")


def _examples(spec: dict[str, Any]) -> list[tuple[str, str, str, dict[str, Any], Any]]:
    """(method, path template, example name, operation, body) for every documented body."""
    found = []
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            if method not in _METHODS or "requestBody" not in op:
                continue
            content = op["requestBody"]["content"].get("application/json", {})
            for name, example in content.get("examples", {}).items():
                found.append((method.upper(), path, name, op, example["value"]))
    # Grants first: the other wallet examples spend what they give.
    return sorted(found, key=lambda f: (not f[1].endswith("/grants"), f[1]))


async def _hold(stack: Stack, token: str, wallet_id: str, body: dict[str, Any]) -> str:
    r = await stack.api.post(
        f"/v1/wallets/{wallet_id}/holds",
        json=body,
        headers={"authorization": f"Bearer {token}", "idempotency-key": uuid.uuid4().hex},
    )
    assert r.status_code == 201, r.text
    return str(r.json()["hold"]["id"])


async def _write_communities(mongodb: MongoTarget, examples: list[Any]) -> None:
    named = {e[4]["community_id"] for e in examples if isinstance(e[4].get("community_id"), str)}
    async with communities(mongodb) as collection:
        for community_id in named:
            doc = {
                "_id": community_id,
                "name": "Examples Club",
                "owner_ids": ["examples-owner"],
                "status": "active",
            }
            await collection.replace_one({"_id": community_id}, doc, upsert=True)


def _token(stack: Stack, op: dict[str, Any], tokens: dict[str, str]) -> str:
    """Routes for finance staff, sponsors or services say so in their summary; the rest
    are the member's own."""
    summary = op["summary"]
    if "finance_admin)" in summary:
        return tokens["finance"]
    if "(sponsor)" in summary:
        return tokens["sponsor"]
    if "(service" in summary:
        scopes = list(op["x-service-scopes"])
        return issue_token(stack.settings, sub="examples-service", role=Role.service, scopes=scopes)
    return tokens["member"]


async def test_every_documented_request_example_is_accepted(
    stack: Stack, mongodb: MongoTarget
) -> None:
    spec = (await stack.api.get("/openapi.json")).json()
    examples = _examples(spec)
    member = stack.token(sub=f"examples-{uuid.uuid4().hex[:8]}")
    finance = stack.token(sub="examples-finance", role=Role.finance_admin)
    sponsor = stack.token(sub=f"examples-sponsor-{uuid.uuid4().hex[:8]}", role=Role.sponsor)
    tokens = {"member": member, "finance": finance, "sponsor": sponsor}
    await _write_communities(mongodb, examples)
    me = await stack.api.get("/v1/wallets/me", headers={"authorization": f"Bearer {member}"})
    wallet_id = me.json()["id"]
    hold_example = next(e[4] for e in examples if e[1].endswith("/holds"))
    assert len(examples) >= 7
    answered: dict[str, int] = {}
    for method, template, name, op, body in examples:
        token = _token(stack, op, tokens)
        values: dict[str, str] = {}
        for p in op.get("parameters", []):
            if p["in"] != "path":
                continue
            if p["name"] == "wallet_id":
                values["wallet_id"] = wallet_id
            elif p["name"] == "hold_id":
                values["hold_id"] = await _hold(stack, member, wallet_id, hold_example)
            else:
                values[p["name"]] = str(uuid.uuid4())
        path = template.format(**values)
        headers = {"authorization": f"Bearer {token}", "idempotency-key": uuid.uuid4().hex}
        r: httpx.Response = await stack.api.request(method, path, json=body, headers=headers)
        label = f"{method} {template} [{name}]"
        answered[label] = r.status_code
        assert str(r.status_code) in op["responses"], (label, r.status_code, r.text)
        assert r.status_code not in (400, 422), (label, r.text)
        if len(values) == sum(1 for v in values if v in ("wallet_id", "hold_id")):
            # Every id was a real one: the example did what it says.
            assert 200 <= r.status_code < 300, (label, r.status_code, r.text)
    # The wallet's examples really moved credits: 250 granted, 40 spent, 60 of a hold
    # captured and the other holds released; the member subscribed to the example plan,
    # its first period paid from the same wallet.
    assert answered["POST /v1/wallets/{wallet_id}/grants [default]"] == 201
    assert answered["POST /v1/wallets/{wallet_id}/debits [default]"] == 201
    assert answered["POST /v1/subscriptions [credits]"] == 201
    plan = next(e[4] for e in examples if e[1] == "/v1/subscription-plans" and e[2] == "credits")
    wallet = await stack.wallet(member)
    assert wallet["available_credits"] == 250 - 40 - 60 - 100 - plan["price_credits"]
    assert wallet["locked_credits"] == 100
