"""Spending in a community (DESIGN §10) through the API: the fee split in credits and paise,
revenue moved out of deferred by exactly the drawn basis, fee plans, reversals, earnings,
and every refusal a client can cause."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from commdesk_billing.config import Settings
from commdesk_billing.modules.ledger.model import CommunityAccounts, House
from commdesk_billing.modules.wallet.model import LotSource
from commdesk_billing.security.jwt import Role, issue_token
from tests.conftest import auth, new_wallet
from tests.modules.communities.conftest import Put

PROBLEM = "application/problem+json"


async def _inr(engine: AsyncEngine, journal_id: str, account: uuid.UUID) -> int:
    async with engine.connect() as conn:
        return int(
            (
                await conn.execute(
                    text(
                        "SELECT coalesce(sum(amount), 0) FROM ledger_entries "
                        "WHERE journal_id = :j AND account_id = :a"
                    ),
                    {"j": journal_id, "a": account},
                )
            ).scalar_one()
        )


async def _journal_of(engine: AsyncEngine, spend_id: str) -> str:
    async with engine.connect() as conn:
        return str(
            (
                await conn.execute(
                    text("SELECT journal_id FROM community_spends WHERE id = :s"), {"s": spend_id}
                )
            ).scalar_one()
        )


async def _spend(
    client: httpx.AsyncClient,
    tok: str,
    community_id: str,
    credits: int,
    key: str | None = None,
    **extra: Any,
) -> httpx.Response:
    return await client.post(
        f"/v1/communities/{community_id}/spends",
        json={"credits": credits, "reason": "ticket", **extra},
        headers=auth(tok, key or uuid.uuid4().hex),
    )


async def test_a_spend_splits_credits_and_basis_and_moves_exactly_the_basis(
    client: httpx.AsyncClient, token: Callable[..., str], engine: AsyncEngine, put: Put
) -> None:
    community = await put(name="Chess Club")
    member = f"member-{uuid.uuid4().hex}"
    wallet = await new_wallet(engine, 3000, sub=member)  # ₹300 of base credits: 25423 taxable
    r = await _spend(client, token(sub=member), community, 100, reference="ticket-42")
    assert r.status_code == 201, r.text
    s = r.json()
    # 100 of 3000 credits with 25423 paise of basis: round-half-up(2542300 / 3000) = 847.
    assert {k: s[k] for k in ("credits", "fee_credits", "community_credits")} == {
        "credits": 100,
        "fee_credits": 10,
        "community_credits": 90,
    }
    assert (s["basis_paise"], s["fee_paise"], s["community_paise"]) == (847, 85, 762)
    assert (s["fee_bps"], s["fee_plan_version"], s["wallet_id"]) == (1000, 0, str(wallet.id))
    assert s["receipt"] == {
        "gross_credits": 100,
        "fee_credits": 10,
        "net_credits": 90,
        "basis_paise": 847,
        "fee_paise": 85,
        "net_paise": 762,
        "fee_rate": "10.00%",
        "rounding": "fee = gross x rate, rounded half up, in credits and in paise",
        "note": None,
    }
    journal = await _journal_of(engine, s["id"])
    assert await _inr(engine, journal, House.DEFERRED_REVENUE) == 847  # out of deferred
    assert await _inr(engine, journal, House.PLATFORM_FEE_REVENUE) == -85
    assert await _inr(engine, journal, CommunityAccounts.of(community).payable) == -762
    # The member's statement names the community.
    lines = await client.get(
        f"/v1/wallets/{wallet.id}/transactions", headers=auth(token(sub=member))
    )
    [line] = [t for t in lines.json()["data"] if t["transaction_type"] == "community_spend"]
    assert line["credits"] == 100 and line["reason"] == "ticket - in Chess Club"
    assert line["metadata"]["community_id"] == community


async def test_the_same_key_is_the_same_spend(
    client: httpx.AsyncClient, token: Callable[..., str], engine: AsyncEngine, put: Put
) -> None:
    community = await put()
    member = f"member-{uuid.uuid4().hex}"
    await new_wallet(engine, 500, sub=member)
    tok, key = token(sub=member), uuid.uuid4().hex
    first = await _spend(client, tok, community, 50, key)
    again = await _spend(client, tok, community, 50, key)
    assert first.status_code == again.status_code == 201
    assert again.json()["id"] == first.json()["id"]
    assert again.headers.get("idempotent-replayed") == "true"
    other = await _spend(client, tok, community, 60, key)
    assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"
    wallet = await client.get("/v1/wallets/me", headers=auth(tok))
    assert wallet.json()["available_credits"] == 450


@pytest.mark.parametrize(
    ("setup", "status", "code"),
    [
        ("unknown", 404, "community_not_found"),
        ("suspended", 409, "community_suspended"),
        ("bad id", 422, "invalid_community_id"),
        ("broke", 409, "insufficient_credits"),
    ],
)
async def test_refusals_change_nothing(
    setup: str,
    status: int,
    code: str,
    client: httpx.AsyncClient,
    token: Callable[..., str],
    engine: AsyncEngine,
    put: Put,
) -> None:
    member = f"member-{uuid.uuid4().hex}"
    await new_wallet(engine, 40, sub=member)
    community = {
        "unknown": f"nobody-{uuid.uuid4().hex[:8]}",
        "suspended": await put(status="suspended"),
        "bad id": "no%20such",
        "broke": await put(),
    }[setup]
    r = await _spend(client, token(sub=member), community, 41 if setup == "broke" else 10)
    assert (r.status_code, r.headers["content-type"], r.json()["code"]) == (status, PROBLEM, code)
    wallet = await client.get("/v1/wallets/me", headers=auth(token(sub=member)))
    assert wallet.json()["available_credits"] == 40


async def test_a_fee_plan_change_applies_to_later_spends_only(
    client: httpx.AsyncClient, token: Callable[..., str], engine: AsyncEngine, put: Put
) -> None:
    community = await put()
    member = f"member-{uuid.uuid4().hex}"
    await new_wallet(engine, 1000, sub=member)
    before = await _spend(client, token(sub=member), community, 100)
    admin = token(Role.finance_admin)
    changed = await client.put(
        f"/v1/communities/{community}/fee-plan",
        json={"fee_bps": 550, "reason": "partner rate"},
        headers=auth(admin),
    )
    assert changed.status_code == 200, changed.text
    assert (changed.json()["version"], changed.json()["fee_rate"]) == (1, "5.50%")
    after = await _spend(client, token(sub=member), community, 100)
    assert (after.json()["fee_bps"], after.json()["fee_plan_version"]) == (550, 1)
    assert after.json()["fee_credits"] == 6  # 5.5 rounds half up
    spent = await client.get(f"/v1/community-spends/{before.json()['id']}", headers=auth(admin))
    assert (spent.json()["fee_bps"], spent.json()["fee_plan_version"]) == (1000, 0)
    for bad in ({"fee_bps": 5001, "reason": "x"}, {"fee_bps": -1, "reason": "x"}, {"fee_bps": 5}):
        r = await client.put(f"/v1/communities/{community}/fee-plan", json=bad, headers=auth(admin))
        assert r.status_code == 422 and r.headers["content-type"] == PROBLEM


async def test_a_reversal_gives_the_credits_and_their_basis_back_once(
    client: httpx.AsyncClient, token: Callable[..., str], engine: AsyncEngine, put: Put
) -> None:
    owner = f"owner-{uuid.uuid4().hex}"
    community = await put(owner_ids=[owner])
    member = f"member-{uuid.uuid4().hex}"
    await new_wallet(engine, 3000, sub=member)
    spend = (await _spend(client, token(sub=member), community, 100)).json()
    owner_tok = token(sub=owner)
    r = await client.post(
        f"/v1/community-spends/{spend['id']}/reversal",
        json={"reason": "event cancelled"},
        headers=auth(owner_tok, uuid.uuid4().hex),
    )
    assert r.status_code == 201, r.text
    assert r.json()["reversed_at"] is not None
    wallet = await client.get("/v1/wallets/me", headers=auth(token(sub=member)))
    assert wallet.json()["available_credits"] == 3000
    async with engine.connect() as conn:
        lot = (
            await conn.execute(
                text(
                    "SELECT credits_granted, taxable_paise, source FROM credit_lots "
                    "WHERE source_ref = :s"
                ),
                {"s": spend["id"]},
            )
        ).one()
    assert (lot.credits_granted, lot.taxable_paise, lot.source) == (
        100,
        847,
        LotSource.spend_reversal.value,
    )
    again = await client.post(
        f"/v1/community-spends/{spend['id']}/reversal",
        json={"reason": "twice"},
        headers=auth(owner_tok, uuid.uuid4().hex),
    )
    assert (again.status_code, again.json()["code"]) == (409, "spend_already_reversed")
    earned = await client.get(f"/v1/communities/{community}/earnings", headers=auth(owner_tok))
    assert earned.json() | {"fee_plan": None} == {
        "community_id": community,
        "earned_credits": 0,
        "fee_credits": 0,
        "payable_paise": 0,
        "basis_paise": 0,
        "fee_paise": 0,
        "spends": 1,
        "reversals": 1,
        "fee_plan": None,
    }


async def test_earnings_and_the_list_add_up_newest_first(
    client: httpx.AsyncClient,
    token: Callable[..., str],
    engine: AsyncEngine,
    put: Put,
    settings: Settings,
) -> None:
    owner = f"owner-{uuid.uuid4().hex}"
    community = await put(owner_ids=[owner])
    members = [f"member-{uuid.uuid4().hex}" for _ in range(3)]
    for m in members:
        await new_wallet(engine, 1000, sub=m)
    ids = []
    for i, m in enumerate(members):
        r = await _spend(client, token(sub=m), community, 100 + i)
        ids.append(r.json()["id"])
    owner_tok = token(Role.community_owner, sub=f"mgr-{uuid.uuid4().hex}")
    claim = issue_token(
        settings, sub=f"mgr-{uuid.uuid4().hex}", role=Role.community_owner, communities=[community]
    )
    earned = await client.get(f"/v1/communities/{community}/earnings", headers=auth(claim))
    assert earned.status_code == 200, earned.text
    e = earned.json()
    page1 = await client.get(f"/v1/communities/{community}/spends?limit=2", headers=auth(claim))
    page2 = await client.get(
        f"/v1/communities/{community}/spends?limit=2&cursor={page1.json()['next_cursor']}",
        headers=auth(claim),
    )
    listed = page1.json()["data"] + page2.json()["data"]
    assert [s["id"] for s in listed] == ids[::-1] and page2.json()["next_cursor"] is None
    assert e["spends"] == 3 and e["earned_credits"] == sum(s["community_credits"] for s in listed)
    assert e["payable_paise"] == sum(s["community_paise"] for s in listed)
    assert e["fee_credits"] + e["earned_credits"] == 303
    # A community_owner token that does not name this community sees nothing.
    other = await client.get(f"/v1/communities/{community}/earnings", headers=auth(owner_tok))
    assert other.status_code == 403


async def test_promotional_credits_earn_credits_and_no_rupees(
    client: httpx.AsyncClient, token: Callable[..., str], engine: AsyncEngine, put: Put
) -> None:
    community = await put()
    member = f"member-{uuid.uuid4().hex}"
    await new_wallet(engine, 200, sub=member, source=LotSource.promotional)
    s = (await _spend(client, token(sub=member), community, 200)).json()
    assert (s["basis_paise"], s["fee_paise"], s["community_paise"]) == (0, 0, 0)
    assert (s["fee_credits"], s["community_credits"]) == (20, 180)
    assert s["receipt"]["note"] == (
        "paid with promotional credits: the community earns credits, no rupees"
    )


async def test_who_may_spend_whose_credits(
    client: httpx.AsyncClient, token: Callable[..., str], engine: AsyncEngine, put: Put
) -> None:
    community = await put()
    member = f"member-{uuid.uuid4().hex}"
    await new_wallet(engine, 100, sub=member)
    service = token(Role.service, sub="svc-events", scopes=["communities:spend"])
    ok = await _spend(client, service, community, 10, user_id=member)
    assert ok.status_code == 201, ok.text
    unscoped = token(Role.service, sub="svc-other", scopes=["wallets:debit"])
    assert (await _spend(client, unscoped, community, 10, user_id=member)).status_code == 403
    assert (await _spend(client, service, community, 10)).status_code == 403  # names nobody
    someone = token(sub=f"member-{uuid.uuid4().hex}")
    assert (await _spend(client, someone, community, 10, user_id=member)).status_code == 403


@pytest.mark.parametrize(
    "body",
    [
        {"credits": "10", "reason": "x"},
        {"credits": 10.0, "reason": "x"},
        {"credits": 0, "reason": "x"},
        {"credits": True, "reason": "x"},
        {"credits": 10, "reason": ""},
        {"credits": 10, "reason": "x\u0000"},
        {"credits": 10, "reason": "x", "fee_bps": 0},
        {"credits": 10},
    ],
)
async def test_hostile_bodies_are_problems(
    body: dict[str, Any], client: httpx.AsyncClient, token: Callable[..., str], put: Put
) -> None:
    community = await put()
    r = await client.post(
        f"/v1/communities/{community}/spends",
        json=body,
        headers=auth(token(), uuid.uuid4().hex),
    )
    assert r.status_code == 422 and r.headers["content-type"] == PROBLEM, r.text
